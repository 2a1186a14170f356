// The review workspace (templates/grading/_review_panel.html) and the review queue.
// Everything is delegated from the document, so the answers htmx swaps in work the same.
//   keyboard   j/k next/previous answer, a approve, e first score, f feedback,
//              c comment on the selected passage, b comment bank, ? help, Esc leaves a field
//   rubric     clicking a level descriptor scores its criterion; typing a score presses the
//              level it meets; the running total and the "changed by you" marks follow
//   comments   selecting a passage of the answer opens the comment form for it
//   bank       a saved comment goes where the teacher is writing; "Save to comment bank"
//   queue      "select all" ticks every answer that may be approved in bulk
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

  function focusField(id) {
    var field = document.getElementById(id);
    if (field) { field.focus(); if (field.select) field.select(); }
  }

  // --- The rubric: levels, running total, changed marks -------------------------------

  // The level a score meets: the one with the most points not above it (grading/workspace.py
  // level_met says the same for the page the server draws).
  function levelMet(buttons, points) {
    var best = null;
    buttons.forEach(function (b) {
      var p = parseInt(b.dataset.levelPoints, 10);
      if (p <= points && (best === null || p > parseInt(best.dataset.levelPoints, 10))) best = b;
    });
    return best;
  }

  function scoreOf(input) {
    var value = input.value.trim();
    return /^\d+$/.test(value) ? parseInt(value, 10) : null;
  }

  function refreshCriterion(input) {
    var fieldset = input.closest("fieldset.criterion-score");
    if (!fieldset) return;
    var points = scoreOf(input);
    var buttons = Array.prototype.slice.call(fieldset.querySelectorAll("button.level"));
    var met = points === null ? null : levelMet(buttons, points);
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", b === met ? "true" : "false"); });
    var ai = input.dataset.ai === "" ? null : parseInt(input.dataset.ai, 10);
    var changed = ai !== null && points !== null && points !== ai;
    fieldset.classList.toggle("changed", changed);
    var mark = fieldset.querySelector("[data-changed-mark]");
    if (mark) mark.hidden = !changed;
  }

  function refreshTotal() {
    var output = document.getElementById("running-total");
    if (!output) return;
    var total = 0;
    document.querySelectorAll("#review-form .score-input").forEach(function (input) {
      total += scoreOf(input) || 0;
    });
    output.textContent = String(total);
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("#review-form .score-input")) {
      refreshCriterion(event.target);
      refreshTotal();
    }
  });

  document.addEventListener("click", function (event) {
    var level = event.target.closest && event.target.closest("button.level[data-score]");
    if (!level) return;
    var input = document.getElementById(level.dataset.score);
    if (!input) return;
    input.value = level.dataset.levelPoints;
    input.dispatchEvent(new Event("input", { bubbles: true }));
  });

  // --- Inline comments: select a passage, write, add ----------------------------------

  function answerText() { return document.querySelector("#answer-annotations [data-answer-text]"); }

  // Characters (code points, as the server counts them) from the start of the answer's text.
  function codePoints(text) { return Array.from(text).length; }

  function selectedPassage() {
    var text = answerText();
    var selection = window.getSelection();
    if (!text || !selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    var range = selection.getRangeAt(0);
    if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) return null;
    var before = document.createRange();
    before.selectNodeContents(text);
    before.setEnd(range.startContainer, range.startOffset);
    var quote = range.toString();
    if (!quote.trim()) return null;
    var start = codePoints(before.toString());
    return { start: start, end: start + codePoints(quote), quote: quote };
  }

  function openComposer(passage) {
    var form = document.getElementById("comment-composer");
    if (!form || !passage) return false;
    form.elements.start.value = passage.start;
    form.elements.end.value = passage.end;
    form.elements.quote.value = passage.quote;
    form.querySelector("[data-composer-quote]").textContent =
      passage.quote.length > 80 ? passage.quote.slice(0, 80) + "…" : passage.quote;
    form.hidden = false;
    var hint = document.querySelector("[data-composer-hint]");
    if (hint) hint.hidden = true;
    return true;
  }

  document.addEventListener("selectionchange", function () {
    var passage = selectedPassage();
    if (passage) openComposer(passage);
  });

  document.addEventListener("click", function (event) {
    if (!(event.target.closest && event.target.closest("[data-composer-cancel]"))) return;
    var form = document.getElementById("comment-composer");
    if (form) { form.reset(); form.hidden = true; }
    var hint = document.querySelector("[data-composer-hint]");
    if (hint) hint.hidden = false;
  });

  // --- The comment bank ---------------------------------------------------------------

  var writingIn = null;  // the last field the teacher wrote in: where a saved comment goes
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-bank-target]")) writingIn = event.target;
  });

  function insert(field, text) {
    var start = field.selectionStart, end = field.selectionEnd;
    var before = field.value.slice(0, start);
    var glue = before && !/\s$/.test(before) ? " " : "";
    field.setRangeText(glue + text, start, end, "end");
    field.dispatchEvent(new Event("input", { bubbles: true }));
    field.focus();
  }

  document.addEventListener("click", function (event) {
    var use = event.target.closest && event.target.closest("[data-bank-use]");
    if (use) {
      var field = writingIn && document.contains(writingIn) && !writingIn.closest("[hidden]")
        ? writingIn : document.getElementById("feedback");
      if (!field) return;
      insert(field, use.dataset.text);
      if (window.htmx) htmx.ajax("POST", use.dataset.bankUse, { source: use, swap: "none" });
      return;
    }
    var save = event.target.closest && event.target.closest("[data-bank-save]");
    if (save) {
      var source = document.querySelector(save.dataset.bankSave);
      var bank = document.getElementById("comment-bank");
      if (!source || !bank || !window.htmx) return;
      bank.open = true;
      htmx.ajax("POST", bank.dataset.saveUrl, {
        source: save, target: "#comment-bank-list", swap: "outerHTML", values: { text: source.value }
      });
    }
  });

  // --- Keyboard -------------------------------------------------------------------------

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (tag === "input" || tag === "textarea" || tag === "select") {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (!panel() && event.key !== "?") return;
    if (event.key === "j") go("next");
    else if (event.key === "k") go("previous");
    else if (event.key === "a") { var b = document.getElementById("approve-button"); if (b) b.click(); }
    else if (event.key === "e") { var s = document.querySelector("#review-form .score-input"); if (s) { s.focus(); s.select(); } }
    else if (event.key === "f") focusField("feedback");
    else if (event.key === "c") {
      var composer = document.getElementById("comment-composer");
      if (composer && (openComposer(selectedPassage()) || !composer.hidden)) focusField("comment-body");
    }
    else if (event.key === "b") { var bank = document.getElementById("comment-bank"); if (bank) { bank.open = true; focusField("bank-query"); } }
    else if (event.key === "?") toggleHelp();
    else if (event.key === "Escape") toggleHelp(false);
    else return;
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-show-help]")) toggleHelp(true);
    if (event.target.id === "shortcut-close") toggleHelp(false);
  });

  // --- The queue ------------------------------------------------------------------------

  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      document.querySelectorAll("input.bulk-box").forEach(function (box) { box.checked = event.target.checked; });
    }
  });
})();
