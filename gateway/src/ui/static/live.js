// Keeps a work order's page current while it is open (ui/live.rs says why
// it polls). Every 2 s it asks /ui/work-orders/{id}/version for the
// version's entity tag; when it differs from the one the page was
// rendered from, the page is loaded again, unless the person is typing in
// one of its forms: then a notice says the work order changed, with a
// link to reload, and nothing they typed is thrown away.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var live = document.getElementById("live");
  if (!live || !window.fetch) {
    return;
  }
  var versionUrl = live.getAttribute("data-version-url");
  var pageUrl = live.getAttribute("data-page-url");
  var seen = live.getAttribute("data-etag");
  var edited = false;
  document.addEventListener("input", function (event) {
    if (event.target && event.target.form) {
      edited = true;
    }
  });
  function typing() {
    var active = document.activeElement;
    var inForm = active && active.form && active.tagName !== "BUTTON";
    return edited || Boolean(inForm);
  }
  function changed() {
    if (!typing()) {
      window.location.replace(pageUrl);
      return;
    }
    live.hidden = false;
  }
  function schedule() {
    window.setTimeout(poll, POLL_MS);
  }
  function poll() {
    fetch(versionUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw response.status;
        }
        return response.text();
      })
      .then(function (tag) {
        if (tag !== seen) {
          seen = tag;
          changed();
        }
        schedule();
      })
      .catch(function (status) {
        // Signed out, or the work order is gone: stop asking.
        if (status !== 401 && status !== 403 && status !== 404) {
          schedule();
        }
      });
  }
  schedule();
})();
