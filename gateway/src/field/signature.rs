//! The customer's signature: drawn on a canvas by the app's own script
//! (`/app.js`, the only script the pages' policy allows), kept as a
//! compact SVG path of `M`/`L` commands with integer coordinates (at most
//! `SIGNATURE_BYTES_MAX`, 16 KiB, which the typed operation checks again),
//! submitted in a hidden field and shown back as an inline SVG.
//!
//! Why a path string: it is small, it replays exactly, and its alphabet
//! (letters `M`, `L`, digits, spaces, `-`) cannot carry markup or script.

use axum::http::header;
use axum::response::IntoResponse;
use fieldsync_node::doc::{signature_problem, SignatureProblem, SIGNATURE_BYTES_MAX};
use maud::{html, Markup};

/// The pad's drawing size in pixels (the path's coordinate space).
pub(super) const PAD_WIDTH_PX: u32 = 600;
pub(super) const PAD_HEIGHT_PX: u32 = 200;

const SCRIPT: &str = r#"(function () {
  "use strict";
  var pads = document.querySelectorAll("canvas[data-signature-for]");
  Array.prototype.forEach.call(pads, function (canvas) {
    var input = document.getElementById(canvas.getAttribute("data-signature-for"));
    var status = document.getElementById("signature-status");
    var max = parseInt(canvas.getAttribute("data-bytes-max"), 10) || 16384;
    var context = canvas.getContext("2d");
    var path = "", drawing = false, last = null;
    context.lineWidth = 2; context.lineCap = "round"; context.lineJoin = "round";
    function point(event) {
      var box = canvas.getBoundingClientRect();
      return [Math.round((event.clientX - box.left) * canvas.width / box.width),
              Math.round((event.clientY - box.top) * canvas.height / box.height)];
    }
    function add(command, p) {
      var part = command + p[0] + " " + p[1];
      if (path.length + part.length + 1 > max) {
        if (status) { status.textContent = "The signature is full."; }
        return false;
      }
      path += (path ? " " : "") + part; last = p; input.value = path;
      if (status) { status.textContent = "Signed."; }
      return true;
    }
    canvas.addEventListener("pointerdown", function (event) {
      var p = point(event);
      if (!add("M", p)) { return; }
      drawing = true;
      if (canvas.setPointerCapture) { canvas.setPointerCapture(event.pointerId); }
      context.beginPath(); context.moveTo(p[0], p[1]);
      event.preventDefault();
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) { return; }
      var p = point(event);
      if (last && p[0] === last[0] && p[1] === last[1]) { return; }
      if (!add("L", p)) { drawing = false; return; }
      context.lineTo(p[0], p[1]); context.stroke();
    });
    ["pointerup", "pointercancel"].forEach(function (name) {
      canvas.addEventListener(name, function () { drawing = false; });
    });
    var clear = document.getElementById("signature-clear");
    if (clear) {
      clear.addEventListener("click", function () {
        path = ""; last = null; input.value = "";
        context.clearRect(0, 0, canvas.width, canvas.height);
        if (status) { status.textContent = "Not signed yet."; }
      });
    }
  });
})();
"#;

/// `/app.js`: the signature pad.
pub(super) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// Why a submitted signature cannot be stored, in words; `None` if it can.
/// (The rule is the typed operation's, `signature_problem`; this says it
/// in words.)
pub(super) fn problem(signature: &str) -> Option<String> {
    signature_problem(signature).map(|problem| match problem {
        SignatureProblem::TooLong => format!(
            "The signature is too detailed to store (over {} KiB); clear it and sign again.",
            SIGNATURE_BYTES_MAX / 1024
        ),
        SignatureProblem::Unreadable => {
            "The signature could not be read; clear it and sign again.".to_string()
        }
    })
}

/// The pad and its hidden field, for the closure form.
pub(super) fn pad() -> Markup {
    html! {
        fieldset {
            legend { "Customer's signature" }
            p id="signature-help" { "Ask the customer to sign in the box with a finger, pen or mouse." }
            canvas id="signature-pad" class="pad" width=(PAD_WIDTH_PX) height=(PAD_HEIGHT_PX)
                data-signature-for="signature" data-bytes-max=(SIGNATURE_BYTES_MAX)
                role="img" aria-label="Signature box" aria-describedby="signature-help" {}
            input type="hidden" id="signature" name="signature" value="";
            p id="signature-status" aria-live="polite" { "Not signed yet." }
            button type="button" id="signature-clear" { "Clear signature" }
            label for="no_signature" class="inline" {
                input type="checkbox" id="no_signature" name="no_signature" value="yes";
                " The customer could not sign"
            }
        }
    }
}

/// A stored signature as an inline SVG (the field app's and the office
/// console's pages); maud escapes the path like any attribute.
pub(crate) fn show(signature: &str) -> Markup {
    html! {
        svg class="signature" viewBox={ "0 0 " (PAD_WIDTH_PX) " " (PAD_HEIGHT_PX) }
            role="img" aria-label="The customer's signature" xmlns="http://www.w3.org/2000/svg" {
            path d=(signature) fill="none" stroke="black" stroke-width="2" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_move_and_line_paths_pass() {
        assert_eq!(problem("M1 2 L3 4 M-1 0 L600 200"), None);
        for bad in ["", "L1 2", "M1 2 Z", "M1,2", "M1 2<script>", "M1.5 2"] {
            assert!(problem(bad).is_some(), "{bad}");
        }
        let long = format!("M0 0{}", " L1 1".repeat(SIGNATURE_BYTES_MAX / 5 + 1));
        assert!(problem(&long).unwrap().contains("too detailed"));
    }
}
