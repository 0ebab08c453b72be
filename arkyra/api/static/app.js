/*
 * ARKYRA dashboard: progressive enhancement, no framework, no build step.
 *
 * - Links marked data-dialog open their page as a fragment in the modal <dialog>
 *   (showModal makes the rest of the page inert; Escape closes; Tab is kept inside).
 * - Forms inside the modal are checked by the browser (required, type=url), then posted
 *   with fetch; the server answers with the form again (errors) or X-Arkyra-Redirect.
 * - Search boxes marked data-filter-table filter their table as you type.
 * Without JavaScript every link and form still works as a normal page.
 */
(function () {
  "use strict";

  var FOCUSABLE = [
    "a[href]", "button:not([disabled])", "input:not([disabled]):not([type=hidden])",
    "select:not([disabled])", "textarea:not([disabled])", "[tabindex]:not([tabindex='-1'])"
  ].join(",");

  var dialog = document.getElementById("modal");
  var body = document.getElementById("modal-body");
  var opener = null;

  function focusables(root) {
    return Array.prototype.filter.call(root.querySelectorAll(FOCUSABLE), function (el) {
      return !el.closest("[hidden]") && el.getClientRects().length > 0;
    });
  }

  function request(url, options) {
    var init = options || {};
    init.credentials = "same-origin";
    init.headers = Object.assign({ "X-Arkyra-Fragment": "1" }, init.headers || {});
    return fetch(url, init).then(function (response) {
      var target = response.headers.get("X-Arkyra-Redirect");
      if (target) {
        window.location.assign(target);
        return null;
      }
      return response.text();
    });
  }

  function show(html) {
    body.innerHTML = html; // server-rendered and escaped by Jinja
    if (!dialog.open) {
      dialog.showModal();
    }
    var target = body.querySelector(".error-summary") ||
      body.querySelector("[aria-invalid=true]") ||
      focusables(body)[0] || dialog;
    target.focus();
  }

  function failed() {
    show('<section class="panel"><h2 id="dialog-title">Something went wrong</h2>' +
         "<p>The server could not be reached. Check your connection and try again.</p></section>");
  }

  if (dialog && body && typeof dialog.showModal === "function") {
    document.addEventListener("click", function (event) {
      var link = event.target.closest("a[data-dialog]");
      if (link) {
        event.preventDefault();
        opener = link;
        request(link.href).then(function (html) { if (html !== null) { show(html); } })
          .catch(failed);
        return;
      }
      var closer = event.target.closest("[data-close]");
      if (closer && dialog.contains(closer)) {
        event.preventDefault();
        dialog.close();
      }
    });

    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!dialog.contains(form)) {
        return;
      }
      event.preventDefault();
      if (!form.reportValidity()) {
        return;
      }
      var button = form.querySelector("[type=submit]");
      if (button) {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
      }
      request(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form))
      }).then(function (html) { if (html !== null) { show(html); } })
        .catch(failed)
        .finally(function () {
          if (button && button.isConnected) {
            button.disabled = false;
            button.removeAttribute("aria-busy");
          }
        });
    });

    dialog.addEventListener("keydown", function (event) {
      if (event.key !== "Tab") {
        return;
      }
      var items = focusables(dialog);
      if (!items.length) {
        return;
      }
      var first = items[0];
      var last = items[items.length - 1];
      if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    });

    dialog.addEventListener("close", function () {
      body.innerHTML = "";
      if (opener && opener.isConnected) {
        opener.focus();
      }
      opener = null;
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-filter-table]"), function (input) {
    var table = document.getElementById(input.getAttribute("data-filter-table"));
    var count = document.getElementById(input.getAttribute("data-filter-table") + "-count");
    if (!table) {
      return;
    }
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      var shown = 0;
      rows.forEach(function (row) {
        var match = !needle || row.textContent.toLowerCase().indexOf(needle) !== -1;
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      if (count) {
        count.textContent = shown + " of " + (count.getAttribute("data-total") || rows.length) +
          " shown";
      }
    });
  });
}());
