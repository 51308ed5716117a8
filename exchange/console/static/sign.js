// Signing in the browser: the private key file is opened here and never leaves the page.
//
// A form that needs a signature carries:
//   <form data-sign> ... 
//     <input type="hidden" name="statement" value="BASE64 of the exact bytes to sign">
//     <input type="hidden" name="signature">
//     <input type="file" data-sign-key accept=".key,.json">   (the ibx key file)
//     <output data-sign-status></output>
// On submit the key file is read (JSON: {"kind": "ibx.consent.ed25519-private-key.v1",
// "seed": BASE64, "public_key": BASE64}, written by `ibx consent keygen` and
// `ibx identity keygen`), imported into WebCrypto as an Ed25519 key, the statement's
// bytes are signed, the signature (BASE64) is put in the form, and the form is sent.
// Only the signature and the statement travel; the seed stays in this page's memory.
"use strict";

(function () {
  // PKCS#8 wrapping of an Ed25519 seed (RFC 8410): a fixed 16-byte prefix, then the seed.
  const PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
    0x04, 0x22, 0x04, 0x20];

  function fromBase64(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  }

  function toBase64(bytes) {
    let raw = "";
    const view = new Uint8Array(bytes);
    for (let i = 0; i < view.length; i += 1) raw += String.fromCharCode(view[i]);
    return btoa(raw);
  }

  async function signWithKeyFile(file, statement) {
    const body = JSON.parse(await file.text());
    if (!body || typeof body.seed !== "string") throw new Error("not an ibx key file");
    const seed = fromBase64(body.seed);
    if (seed.length !== 32) throw new Error("the key file's seed is not 32 bytes");
    const der = new Uint8Array(PKCS8_PREFIX.length + 32);
    der.set(PKCS8_PREFIX, 0);
    der.set(seed, PKCS8_PREFIX.length);
    const key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
    const signature = await crypto.subtle.sign({ name: "Ed25519" }, key, statement);
    seed.fill(0);
    der.fill(0);
    return toBase64(signature);
  }

  window.ibxSignWithKeyFile = signWithKeyFile;

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-sign")) return;
    if (form.dataset.signed === "1") return; // signed already: let it go
    event.preventDefault();
    const status = form.querySelector("[data-sign-status]");
    const input = form.querySelector("input[data-sign-key]");
    const say = (text) => { if (status) status.textContent = text; };
    try {
      if (!input || !input.files || input.files.length === 0) {
        say(form.dataset.signMissing || "Choose your key file first.");
        return;
      }
      const statement = fromBase64(form.elements.namedItem("statement").value);
      form.elements.namedItem("signature").value = await signWithKeyFile(input.files[0], statement);
      input.value = ""; // the file itself is never sent
      form.dataset.signed = "1";
      form.submit();
    } catch (error) {
      say((form.dataset.signFailed || "Could not sign: ") + error.message);
    }
  });
})();
