// Staff pages: live inbox updates, the idle-logoff warning, the composer's saved replies.
// No inline handlers: everything is wired here once the page has loaded.
"use strict";
(function () {
  // ---- Idle logoff ------------------------------------------------------------------------
  // The server ends a session after data-idle-seconds without a request that counts as
  // activity. Only requests to the server count here too: htmx requests made by the person
  // (not the live inbox refresh, which the server treats as passive) and page loads.
  var WARN_BEFORE_MS = 120 * 1000;
  var warnTimer = null;
  var expireTimer = null;
  var deadline = 0;

  function idleMs() {
    var raw = document.body && document.body.getAttribute("data-idle-seconds");
    var secs = parseInt(raw || "", 10);
    return secs > 0 ? secs * 1000 : 0;
  }

  function dialog() {
    return document.getElementById("idle-warning");
  }

  function closeWarning() {
    var d = dialog();
    if (d && d.open) {
      d.close();
    }
  }

  function warn() {
    var d = dialog();
    if (d && !d.open && typeof d.showModal === "function") {
      d.showModal();
      var stay = document.getElementById("stay-signed-in");
      if (stay) {
        stay.focus();
      }
    }
  }

  function expire() {
    var here = window.location.pathname + window.location.search;
    window.location.assign("/sign-in?expired=1&next=" + encodeURIComponent(here));
  }

  function resetIdle() {
    var total = idleMs();
    if (!total) {
      return;
    }
    if (warnTimer) {
      clearTimeout(warnTimer);
    }
    if (expireTimer) {
      clearTimeout(expireTimer);
    }
    deadline = Date.now() + total;
    warnTimer = setTimeout(warn, Math.max(0, total - WARN_BEFORE_MS));
    expireTimer = setTimeout(expire, total);
    closeWarning();
  }

  // A tab that slept past the deadline (timers paused) signs out as soon as it wakes.
  document.addEventListener("visibilitychange", function () {
    if (deadline && document.visibilityState === "visible" && Date.now() >= deadline) {
      expire();
    }
  });

  function isPassive(elt) {
    return !!(elt && elt.closest && elt.closest("[data-passive]"));
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    var detail = event.detail || {};
    if (isPassive(detail.elt)) {
      return;
    }
    var xhr = detail.xhr;
    // A refused request (signed out already, 401) does not extend anything.
    if (xhr && xhr.status >= 200 && xhr.status < 400) {
      resetIdle();
    }
  });

  // ---- Live inbox -------------------------------------------------------------------------
  function startLiveInbox() {
    var list = document.getElementById("inbox-list");
    if (!list || typeof window.EventSource !== "function") {
      return;
    }
    var url = list.getAttribute("data-live");
    if (!url) {
      return;
    }
    var status = document.getElementById("inbox-status");
    var source = new EventSource(url);
    var pending = null;
    source.addEventListener("change", function () {
      // Several changes at once refresh the list once.
      if (pending) {
        return;
      }
      pending = setTimeout(function () {
        pending = null;
        if (window.htmx) {
          window.htmx.trigger(list, "inbox-changed");
        }
        if (status) {
          status.textContent = "";
          setTimeout(function () {
            status.textContent = "New messages";
          }, 50);
        }
      }, 300);
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }

  // ---- Composer: saved replies --------------------------------------------------------------
  function startComposer() {
    var picker = document.getElementById("template-picker");
    var text = document.getElementById("message-text");
    if (!picker || !text) {
      return;
    }
    var inserting = false;
    picker.addEventListener("change", function () {
      var option = picker.options[picker.selectedIndex];
      var body = option ? option.getAttribute("data-body") : null;
      if (body !== null && picker.value) {
        inserting = true;
        text.value = body;
        inserting = false;
        if (window.htmx) {
          window.htmx.trigger(text, "template-chosen");
        }
      }
    });
    // Editing the inserted reply makes it the person's own text.
    text.addEventListener("input", function () {
      if (!inserting && picker.value) {
        picker.value = "";
      }
    });
  }

  // The composer is swapped by htmx after a refused send: wire the new one.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.elt;
    if (target && target.id === "composer") {
      startComposer();
    }
  });

  function start() {
    resetIdle();
    startLiveInbox();
    startComposer();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
