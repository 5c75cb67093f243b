// Keyboard shortcuts of the steward workspace, and select-all in the queues.
// Only what htmx does not do; no outside assets.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  function click(id) {
    var el = document.getElementById(id);
    if (el) { el.click(); return true; }
    return false;
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var keys = { m: "decide-merge", n: "decide-not_a_match", s: "decide-skip", r: "decide-resolved" };
    if (keys[event.key] && click(keys[event.key])) { event.preventDefault(); return; }
    if (event.key === "j" || event.key === "ArrowRight") {
      var next = document.getElementById("next-task");
      if (next) { event.preventDefault(); window.location.href = next.href; }
      return;
    }
    if (event.key === "c") {
      var comment = document.getElementById("comment");
      if (comment) { event.preventDefault(); comment.focus(); }
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "select-all") {
      document.querySelectorAll('input[name="task"]').forEach(function (box) { box.checked = event.target.checked; });
    }
  });
})();
