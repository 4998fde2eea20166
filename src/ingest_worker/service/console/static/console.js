// ingest-worker console: live rows from /console/stream (htmx SSE extension). Each message is
// one rendered <tr>: it replaces the row of the same incident or arrives on top; a row marked
// data-gone removes it. Nothing else on the page (the filter form above all) is touched.
(function () {
  "use strict";
  // Too far behind to replay what was missed: fetch this page's rows again (the form stays).
  function refreshRows(body) {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("incident-rows");
        if (fresh) {
          body.replaceChildren.apply(body, Array.prototype.map.call(fresh.childNodes, function (node) {
            return document.importNode(node, true);
          }));
        }
      });
  }
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var body = event.target;
    if (!body || !body.hasAttribute || !body.hasAttribute("data-live-rows")) {
      return;
    }
    event.preventDefault();
    if (event.detail.type === "resync") {
      refreshRows(body);
      return;
    }
    var template = document.createElement("template");
    template.innerHTML = "<table><tbody>" + event.detail.data + "</tbody></table>";
    var row = template.content.querySelector("tr[data-id]");
    if (!row) {
      return;
    }
    var old = document.getElementById(row.id);
    if (old) {
      old.remove();
    }
    if (row.getAttribute("data-gone") === "true") {
      return;
    }
    var empty = body.querySelector("tr.empty");
    if (empty) {
      empty.remove();
    }
    body.insertBefore(document.importNode(row, true), body.firstChild);
  });
})();
