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

  // Toasts: dismiss on click, and fade away on their own after a while.
  function armToasts(root) {
    root.querySelectorAll(".toast:not([data-armed])").forEach(function (toast) {
      toast.setAttribute("data-armed", "");
      var close = function () { toast.remove(); };
      var button = toast.querySelector("[data-dismiss]");
      if (button) button.addEventListener("click", close);
      if (!toast.hasAttribute("data-sticky")) setTimeout(close, 8000);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { armToasts(document); });
  document.addEventListener("htmx:load", function (event) { armToasts(document); });
})();
