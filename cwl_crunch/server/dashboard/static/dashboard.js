// cwl-crunch dashboard: live updates and the log tail. Plain JavaScript, no build step.
//
// The server renders every page; this script only
// - re-fetches the page's live fragment (#live, `data-live-url`) when the event stream reports a
//   change, at most a few times a second however busy the cluster is;
// - follows the current container's log file and appends what arrives to #log-tail;
// - submits the filter form when a filter changes.
"use strict";

const REFRESH_DELAY_MS = 300; // events come in bursts (a request and its container): one fetch for the burst
const TAIL_START_BYTES = 64 * 1024; // how much of an existing log to show before following it
const TAIL_KEEP_CHARS = 256 * 1024; // the page keeps at most this much of the log

function autosubmitFilters() {
  for (const input of document.querySelectorAll("[data-autosubmit]")) {
    input.addEventListener("change", () => input.form.submit());
  }
}

function followEvents(region, onRefreshed) {
  const indicator = document.getElementById("live-indicator");
  const source = new EventSource("/dashboard/events");
  let timer = null;
  let busy = false;
  let again = false;

  async function refresh() {
    timer = null;
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(region.dataset.liveUrl, { credentials: "same-origin" });
      if (response.status === 401) {
        window.location.assign("/dashboard/login");
        return;
      }
      if (response.ok) {
        region.innerHTML = await response.text();
        onRefreshed();
      }
    } catch (error) {
      // The server went away for a moment: the next event (or reconnect) refreshes again.
    } finally {
      busy = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }

  function schedule() {
    if (timer === null) timer = window.setTimeout(refresh, REFRESH_DELAY_MS);
  }

  for (const type of ["create", "update", "delete"]) source.addEventListener(type, schedule);
  source.addEventListener("open", () => {
    if (indicator) indicator.hidden = false;
    schedule(); // whatever happened while the stream was down
  });
  source.addEventListener("error", () => {
    if (indicator) indicator.hidden = true;
  });
}

function appendToTail(pre, text) {
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
  pre.append(text);
  if (pre.textContent.length > TAIL_KEEP_CHARS) {
    const kept = pre.textContent.slice(-TAIL_KEEP_CHARS / 2);
    pre.textContent = kept.slice(kept.indexOf("\n") + 1);
  }
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

async function followLog(pre) {
  const size = Number(pre.dataset.size) || 0;
  const live = pre.dataset.live === "1";
  const note = document.getElementById("log-note");
  if (!live && size === 0) {
    if (note) note.textContent = "This log file is empty.";
    return;
  }
  const start = Math.max(0, size - TAIL_START_BYTES);
  const headers = start > 0 ? { Range: `bytes=${start}-` } : {};
  const url = pre.dataset.url + (live ? "?follow=1" : "");
  let response;
  try {
    response = await fetch(url, { headers, credentials: "same-origin" });
  } catch (error) {
    if (note) note.textContent = "The log could not be read.";
    return;
  }
  if (!response.ok) {
    if (note) note.textContent = `The log could not be read (HTTP ${response.status}).`;
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let skipPartialLine = start > 0; // started mid-file: drop the cut first line
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    let text = decoder.decode(value, { stream: true });
    if (skipPartialLine) {
      const newline = text.indexOf("\n");
      if (newline < 0) continue;
      text = text.slice(newline + 1);
      skipPartialLine = false;
    }
    appendToTail(pre, text);
  }
  appendToTail(pre, decoder.decode());
  pre.dataset.finished = "1";
  if (live && note) note.textContent = "The container has finished.";
}

function main() {
  autosubmitFilters();
  const pre = document.getElementById("log-tail");
  if (pre) followLog(pre);
  const region = document.getElementById("live");
  if (!region) return;
  followEvents(region, () => {
    // A new container (a retry) has a log of its own: show the page afresh for it.
    const state = document.getElementById("state");
    const shown = pre ? pre.dataset.url.split("/log/")[1].split("/")[0] : "";
    if (state && state.dataset.container && state.dataset.container !== shown && region.dataset.pageUrl) {
      window.location.assign(region.dataset.pageUrl);
    }
  });
}

document.addEventListener("DOMContentLoaded", main);
