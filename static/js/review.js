// Review pages: keyboard shortcuts (j/k/a/e/?) and "select every unflagged answer".
(function () {
  "use strict";
  function panel() { return document.getElementById("review-panel"); }
  function go(attr) {
    var url = panel() && panel().dataset[attr];
    if (!url) return;
    if (window.htmx) {
      htmx.ajax("GET", url, { target: "#review-panel", swap: "outerHTML" }).then(function () {
        history.pushState({}, "", url);
      });
    } else { window.location = url; }
  }
  function toggleHelp(show) {
    var help = document.getElementById("shortcut-help");
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
    if (!help.hidden) document.getElementById("shortcut-close").focus();
  }
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (tag === "input" || tag === "textarea" || tag === "select") {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.key === "j") go("next");
    else if (event.key === "k") go("previous");
    else if (event.key === "a") { var b = document.getElementById("approve-button"); if (b) b.click(); }
    else if (event.key === "e") { var s = document.querySelector(".score-input"); if (s) { s.focus(); s.select(); } event.preventDefault(); }
    else if (event.key === "?") toggleHelp();
    else if (event.key === "Escape") toggleHelp(false);
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-show-help]")) toggleHelp(true);
    if (event.target.id === "shortcut-close") toggleHelp(false);
  });
  document.addEventListener("change", function (event) {
    if (event.target.id === "select-unflagged") {
      document.querySelectorAll("input.unflagged").forEach(function (box) { box.checked = event.target.checked; });
    }
  });
})();
