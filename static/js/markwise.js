// Small behaviours every page may use, declared in the markup with data- attributes
// instead of inline handlers (onchange=, onclick=, onsubmit=), which the
// Content-Security-Policy forbids. Delegated from the document, so content that htmx
// swaps in later works too.
//   <select data-autosubmit>       submits its form when the choice changes (through
//                                  requestSubmit, so an hx-get/hx-post form stays htmx)
//   <button data-confirm="text">   asks first; Cancel stops the click
//   <form data-confirm="text">     asks first; Cancel stops the submission
//   <button data-print>            prints the page
//   <form data-preview>            never submits (a teacher previewing the student's page)
(function () {
  "use strict";

  document.addEventListener("change", function (event) {
    var field = event.target.closest && event.target.closest("[data-autosubmit]");
    if (!field || !field.form) return;
    if (field.form.requestSubmit) field.form.requestSubmit();
    else field.form.submit();
  });

  // Capture phase: these run before htmx's own listeners on the element, so a cancelled
  // confirmation never reaches them and no request is sent.
  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-confirm]");
    if (target && target.tagName !== "FORM" && !window.confirm(target.dataset.confirm)) {
      event.preventDefault();
      event.stopPropagation();
      return;
    }
    if (event.target.closest && event.target.closest("[data-print]")) window.print();
  }, true);

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("[data-preview]") ||
        (form.matches("[data-confirm]") && !window.confirm(form.dataset.confirm))) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);
})();

// Notices: a short line where the teacher is looking (fixed on screen, announced to screen
// readers) for what an HTMX request did. Success: the Django messages of the request, sent in
// its HX-Trigger header (courses.middleware.HtmxMessagesMiddleware). Failure: htmx swaps no
// error response by itself, so a refused save used to change nothing visible. Here an error
// response that is a fragment (the server's form again, with its errors) is swapped like a
// success; any other error (a 403/404/500 page, an empty body) and a network failure say
// what happened in a notice. The words come translated from the page (#notices data-).
(function () {
  "use strict";
  var SUCCESS_MS = 5000;

  function region() { return document.getElementById("notices"); }

  function show(text, level) {
    var box = region();
    if (!box || !text) return;
    var error = level === "error" || level === "warning";
    var item = document.createElement("div");
    item.className = "notice-item " + (level || "info");
    item.setAttribute("role", error ? "alert" : "status");
    var words = document.createElement("span");
    words.textContent = text;
    item.appendChild(words);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "link-button notice-close";
    close.textContent = "×";
    close.setAttribute("aria-label", box.dataset.close || "Close");
    close.addEventListener("click", function () { item.remove(); });
    item.appendChild(close);
    box.appendChild(item);
    // Errors stay until dismissed: the teacher has to act on them.
    if (!error) window.setTimeout(function () { item.remove(); }, SUCCESS_MS);
  }

  function isFragment(body) {
    return !!body && !/^\s*(<!doctype|<html)/i.test(body) && /</.test(body);
  }

  function carriesMessages(xhr) {
    var header = xhr.getResponseHeader("HX-Trigger");
    return !!header && header.indexOf("markwise:messages") !== -1;
  }

  // A sentence for the status, after what one of our own error pages (base.html's <main>,
  // in the reader's language, e.g. 400.html) says; Django's bare pages are English only.
  function describe(xhr) {
    var box = region() || { dataset: {} };
    var status = xhr.status;
    var said = "";
    if (xhr.responseText && /<html/i.test(xhr.responseText)) {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var heading = doc.querySelector("main h1");
      said = heading ? heading.textContent.trim() : "";
    }
    var generic = status === 403 ? box.dataset.forbidden
      : status === 404 ? box.dataset.notFound
      : status >= 500 ? box.dataset.serverError
      : box.dataset.refused;
    return (said ? said + " — " : "") + (generic || "") + " (" + status + ")";
  }

  document.addEventListener("markwise:messages", function (event) {
    (event.detail && event.detail.value || []).forEach(function (m) { show(m.message, m.level); });
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (detail.xhr.status >= 400 && isFragment(detail.xhr.responseText)) {
      detail.shouldSwap = true;  // the refused form, with what was typed and why
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (carriesMessages(xhr)) return;  // the server said it already
    if (isFragment(xhr.responseText)) show((region() || { dataset: {} }).dataset.notSaved, "error");
    else show(describe(xhr), "error");
  });

  function offline() { show((region() || { dataset: {} }).dataset.network, "error"); }
  document.addEventListener("htmx:sendError", offline);
  document.addEventListener("htmx:timeout", offline);
})();
