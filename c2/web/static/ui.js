// E4 C2 web interface: confirmations, the sign-in link's form, the live
// event stream and the import progress. No inline script: the page's
// Content-Security-Policy allows only this file.
"use strict";

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    ev.preventDefault();
  }
});

function autoSubmit() {
  const form = document.querySelector("form[data-autosubmit]");
  if (form) {
    form.submit();
  }
}

function liveEvents() {
  const list = document.getElementById("events");
  if (!list || !window.EventSource) {
    return;
  }
  const source = new EventSource(list.getAttribute("data-src"));
  const show = (msg) => {
    let e;
    try {
      e = JSON.parse(msg.data);
    } catch (_) {
      return;
    }
    const item = document.createElement("li");
    const when = document.createElement("time");
    when.textContent = (e.time || "").replace("T", " ").replace(/\.\d+Z$/, "Z");
    const kind = document.createElement("b");
    kind.textContent = e.kind || msg.type;
    item.append(when, " ", kind);
    for (const part of [e.topic, e.client_id, e.detail]) {
      if (part) {
        item.append(" ", part);
      }
    }
    list.prepend(item);
    while (list.children.length > 50) {
      list.lastElementChild.remove();
    }
  };
  // The server subscribes before it answers: once open, no event is missed.
  source.onopen = () => list.setAttribute("data-state", "open");
  source.onerror = () => list.setAttribute("data-state", "reconnecting");
  source.onmessage = show;
  const kinds = ["client_added", "client_removed", "topic_added", "topic_removed", "member_added", "member_removed",
    "topic_key_rotated", "client_key_changed", "c2_key_rotated", "pubkey_changed", "command_sent", "command_failed",
    "clients_imported", "command_acked", "client_stalled", "client_key_confirmed", "topic_converged", "devices_behind",
    "device_synced", "ack_mode_set", "anomaly", "events_lost"];
  for (const k of kinds) {
    source.addEventListener(k, show);
  }
  source.addEventListener("signed_out", () => {
    source.close();
    window.location.assign("/ui/signin");
  });
}

function importProgress() {
  const box = document.getElementById("import");
  if (!box) {
    return;
  }
  const bar = document.getElementById("import-progress");
  const count = document.getElementById("import-count");
  const poll = async () => {
    const resp = await fetch(box.getAttribute("data-status"), {credentials: "same-origin"});
    if (!resp.ok) {
      return;
    }
    const st = await resp.json();
    bar.value = st.done;
    count.textContent = String(st.done);
    if (st.finished) {
      window.location.reload();
      return;
    }
    setTimeout(poll, 300);
  };
  if (document.getElementById("import-state").textContent.includes("Importing")) {
    setTimeout(poll, 100);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  autoSubmit();
  liveEvents();
  importProgress();
});
