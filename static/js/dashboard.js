// Small behaviours shared by every page. No framework: htmx does the swapping.
(function () {
  "use strict";

  // Remember the viewer's timezone so the server renders times in it.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("tz=" + zone) === -1) {
      document.cookie = "tz=" + zone + ";path=/;max-age=31536000;samesite=lax";
    }
  } catch (e) { /* very old browser: times stay in UTC, and say so */ }

  // A browser notification for a finished-batch toast, when the user opted in and allowed it.
  function notify(toast) {
    var title = toast.getAttribute("data-browser-notify");
    if (!title || !("Notification" in window) || Notification.permission !== "granted") return;
    try {
      var note = new Notification(title, { body: toast.getAttribute("data-notify-body") || "" });
      var url = toast.getAttribute("data-notify-url");
      if (url) note.onclick = function () { window.focus(); window.location.href = url; };
    } catch (e) { /* some browsers allow notifications only from a service worker */ }
  }

  // Toasts: dismiss on click, and fade away on their own after a while (finished-batch toasts
  // stay until dismissed: they may arrive while nobody looks).
  function armToasts(root) {
    root.querySelectorAll(".toast:not([data-armed])").forEach(function (toast) {
      toast.setAttribute("data-armed", "");
      var close = function () { toast.remove(); };
      var button = toast.querySelector("[data-dismiss]");
      if (button) button.addEventListener("click", close);
      if (!toast.hasAttribute("data-sticky")) setTimeout(close, 8000);
      notify(toast);
    });
  }

  // Confirmation dialogs: a link with data-dialog opens its <dialog> in place instead of
  // navigating to the confirmation page (which is where it goes without JavaScript).
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog"));
      if (dialog && dialog.showModal) {
        event.preventDefault();
        dialog.showModal();
        var first = dialog.querySelector("input:not([disabled]), button[type=submit]");
        if (first) first.focus();
      }
      return;
    }
    var closer = event.target.closest("dialog [data-close]");
    if (closer) {
      var open = closer.closest("dialog");
      if (open.hasAttribute("data-open") && !open.open) return;
      open.close();
      if (open.hasAttribute("data-open")) {
        // Reached by its own address: go back to the batch page.
        window.location.href = window.location.pathname.replace(/(cancel|delete|resubmit)\/$/, "");
      }
    }
  });

  // A form marked data-once sends once: its button is disabled as it submits (the server refuses
  // a second submit anyway; this spares the person a page saying so).
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-once]");
    if (!form) return;
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      setTimeout(function () { button.disabled = true; }, 0);
    });
  });

  // The upload form sends its file as the whole body of the request, its other fields in the
  // query string (batches.views.uploads): the page shows what is sent, the rate and the time
  // left, and can cancel. Without this script the form posts as multipart, as any form does.
  function megabytes(bytes) {
    return bytes >= 1e9 ? (bytes / 1e9).toFixed(2) + " GB" : (bytes / 1e6).toFixed(1) + " MB";
  }

  function uploadProblem(form, text) {
    var box = form.querySelector("[data-upload-progress]");
    box.hidden = false;
    box.querySelector("[data-upload-status]").textContent = text;
    box.querySelector("[data-upload-cancel]").hidden = true;
    form.querySelector("button[type=submit]").disabled = false;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-raw-upload]");
    var input = form && form.querySelector("input[type=file]");
    var file = input && input.files && input.files[0];
    if (!file || !window.XMLHttpRequest || !window.URLSearchParams) return;
    event.preventDefault();
    var limit = Number(form.getAttribute("data-max-bytes"));
    if (limit && file.size > limit) {
      uploadProblem(form, file.name + " is " + megabytes(file.size) + "; the limit is " + megabytes(limit) + ".");
      return;
    }
    var query = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (typeof value === "string" && name !== "csrfmiddlewaretoken") query.append(name, value);
    });
    var box = form.querySelector("[data-upload-progress]");
    var bar = box.querySelector(".seg-ok");
    var meter = box.querySelector("[role=progressbar]");
    var status = box.querySelector("[data-upload-status]");
    var cancel = box.querySelector("[data-upload-cancel]");
    var submit = form.querySelector("button[type=submit]");
    var xhr = new XMLHttpRequest();
    var started = Date.now();
    var said = 0;
    xhr.open("POST", window.location.pathname + "?" + query.toString());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    xhr.setRequestHeader("X-Upload-Filename", encodeURIComponent(file.name));
    xhr.upload.onprogress = function (progress) {
      if (!progress.lengthComputable) return;
      var percent = (100 * progress.loaded) / progress.total;
      bar.setAttribute("width", percent.toFixed(2));
      meter.setAttribute("aria-valuenow", Math.round(percent));
      var now = Date.now();
      if (now - said < 500 && progress.loaded < progress.total) return;  // a calm live region
      said = now;
      var seconds = (now - started) / 1000;
      var text = "Uploading " + megabytes(progress.loaded) + " of " + megabytes(progress.total);
      if (seconds > 0.5 && progress.loaded < progress.total) {
        var rate = progress.loaded / seconds;
        text += " · " + megabytes(rate) + "/s · about " + Math.ceil((progress.total - progress.loaded) / rate) + " s left";
      }
      status.textContent = text;
    };
    xhr.upload.onload = function () {
      status.textContent = "Uploaded " + megabytes(file.size) + ": storing it…";
      cancel.hidden = true;
    };
    xhr.onload = function () {
      if (xhr.status === 201) {
        window.location.href = JSON.parse(xhr.responseText).location;
      } else if (xhr.status === 400) {  // the form again, with what to fix
        var fresh = new DOMParser().parseFromString(xhr.responseText, "text/html").querySelector("form[data-raw-upload]");
        if (!fresh) return uploadProblem(form, "The upload was refused: reload the page and try again.");
        form.replaceWith(fresh);
        var invalid = fresh.querySelector("[aria-invalid=true]");
        if (invalid) invalid.focus();
      } else if (xhr.status === 429 || xhr.status === 503) {  // too many uploads at once: it says when
        var said = null;
        try { said = JSON.parse(xhr.responseText).message; } catch (ignored) { said = null; }
        uploadProblem(form, said || "The dashboard is busy receiving other uploads: try again in a minute.");
      } else {
        uploadProblem(form, "The upload failed (the server answered " + xhr.status + "): reload the page and try again.");
      }
    };
    xhr.onerror = function () {
      // Also what a browser reports when the server refused the upload before reading it.
      uploadProblem(form, "The upload was interrupted: check the connection and try again (with other uploads on their way, wait for one to finish first).");
    };
    xhr.onabort = function () { uploadProblem(form, "Upload canceled: nothing was kept."); };
    cancel.onclick = function () { xhr.abort(); };
    submit.disabled = true;
    cancel.hidden = false;
    box.hidden = false;
    xhr.send(file);
  });

  // A CSV's columns beside its prompt template: a click puts {column} where the cursor is, and
  // the live preview follows (the template's own input event).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-insert]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-for"));
    if (!field) return;
    var text = button.getAttribute("data-insert");
    var start = field.selectionStart != null ? field.selectionStart : field.value.length;
    var end = field.selectionEnd != null ? field.selectionEnd : start;
    field.value = field.value.slice(0, start) + text + field.value.slice(end);
    field.focus();
    field.setSelectionRange(start + text.length, start + text.length);
    field.dispatchEvent(new Event("input", { bubbles: true }));
  });

  // Asking for browser-notification permission must come from a click: do it when the user
  // turns the preference on.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-notify-toggle]");
    if (!form) return;
    var enabling = form.querySelector("input[name=enabled]").value === "on";
    if (enabling && "Notification" in window && Notification.permission === "default") {
      Notification.requestPermission();
    }
  }, true);

  // Copy buttons: the text in data-copy to the clipboard, said in the button and to screen
  // readers (the page's polite status region).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button || !navigator.clipboard) return;
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      var status = document.getElementById("copy-status");
      if (status) status.textContent = "Copied to the clipboard.";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // Keyboard shortcuts (listed on the ? overlay), never while typing in a field.
  var pendingG = false;
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    var target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable], dialog[open]")) return;
    var key = event.key;
    var go = function (path) { event.preventDefault(); window.location.href = path; };
    if (pendingG) {
      pendingG = false;
      if (key === "b") return go("/");
      if (key === "w") return go("/workspaces/");
      if (key === "u") return go("/usage/");
    }
    if (key === "g") { pendingG = true; setTimeout(function () { pendingG = false; }, 1500); return; }
    if (key === "/") {
      var search = document.querySelector("input[type=search]");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
      return;
    }
    if (key === "u") {
      var upload = document.querySelector("a[href$='/upload/']");
      if (upload) { event.preventDefault(); upload.click(); }
      return;
    }
    if (key === "?") {
      var overlay = document.getElementById("shortcuts");
      if (overlay && overlay.showModal) { event.preventDefault(); overlay.showModal(); }
    }
  });

  function upgradeOpenDialogs(root) {
    root.querySelectorAll("dialog[data-open][open]").forEach(function (dialog) {
      if (dialog.showModal && !dialog.matches(":modal")) {
        dialog.close();
        dialog.showModal();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    armToasts(document);
    upgradeOpenDialogs(document);
  });
  document.addEventListener("htmx:load", function () { armToasts(document); });
})();
