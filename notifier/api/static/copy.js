// The domain setup page's copy buttons: the only script in the preview, served from
// this origin to that page alone. Without it the buttons stay hidden and every value
// is still in a read-only field to select and copy by hand.
"use strict";
(function () {
  var status = document.getElementById("copy-status");
  function done(button) {
    var label = button.getAttribute("data-copied") || "";
    button.textContent = label;
    if (status) { status.textContent = label; }
    window.setTimeout(function () {
      button.textContent = button.getAttribute("data-label") || "";
    }, 2000);
  }
  function fallback(field, button) {
    field.focus();
    field.select();
    try { if (document.execCommand("copy")) { done(button); } } catch (e) { /* left selected */ }
  }
  var buttons = document.querySelectorAll("button[data-copy]");
  Array.prototype.forEach.call(buttons, function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) { return; }
    button.setAttribute("data-label", button.textContent);
    button.hidden = false;
    button.addEventListener("click", function () {
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(
          function () { done(button); },
          function () { fallback(field, button); }
        );
      } else {
        fallback(field, button);
      }
    });
  });
})();
