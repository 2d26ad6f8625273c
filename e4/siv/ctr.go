package siv

// xorKeyStream XORs src with the AES-CTR keystream for the synthetic IV v
// into dst. The keystream runs in aesblock (eight blocks at a time in
// assembly on amd64 and arm64) and writes straight into dst: no scratch
// buffer and no allocation at any length.
func (c *Cipher) xorKeyStream(st *state, v *[blockSize]byte, dst, src []byte) {
	// RFC 5297 section 2.5: clear bits 31 and 63 of the counter so that
	// implementations with 32- or 64-bit counters interoperate.
	st.iv = *v
	st.iv[8] &^= 0x80
	st.iv[12] &^= 0x80
	c.ctr.CTR(dst, src, &st.iv)
}
