package web

import (
	"io"
	"mime/multipart"
	"time"

	"github.com/e4-iot/e4kit/c2"
)

func clientNamed(name string) c2.NewClient { return c2.NewClient{Name: name} }

// waitABit is the pause between two polls of a state the test waits for
// (never a timing assertion: the poll gives up only after many).
func waitABit() { time.Sleep(20 * time.Millisecond) }

// multipartForm builds a multipart body.
type multipartForm struct{ w *multipart.Writer }

func newMultipart(dst io.Writer) *multipartForm { return &multipartForm{w: multipart.NewWriter(dst)} }

func (m *multipartForm) field(name, value string) { _ = m.w.WriteField(name, value) }

func (m *multipartForm) file(field, name, data string) {
	fw, _ := m.w.CreateFormFile(field, name)
	_, _ = io.WriteString(fw, data)
}

// close ends the body and returns its content type.
func (m *multipartForm) close() string {
	_ = m.w.Close()
	return m.w.FormDataContentType()
}
