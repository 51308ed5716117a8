// Checking a ledger entry's inclusion proof in the browser, against the signed checkpoint.
//
// The entry page embeds everything in <script type="application/json" id="proof-data">
// (data, not code: the CSP lets no inline script run):
//   {"index": I, "treeSize": N, "leaf": BASE64 of the entry's bytes (RFC 8785),
//    "proof": [BASE64 hash, ...], "note": the checkpoint's C2SP signed note,
//    "vkey": the ledger's C2SP verifier key "name+hexid+BASE64(0x01 || key)"}
// Nothing is fetched. With WebCrypto this script recomputes the RFC 9162 leaf hash
// SHA-256(0x00 || leaf), folds the proof up to a root (SHA-256(0x01 || left || right)),
// compares it with the root the checkpoint states, and verifies the checkpoint's Ed25519
// signature under the ledger key. Each step is listed; the verdict is "verified" only if
// every step holds, else it names what failed. The labels come from data-l-* attributes
// of #proof (the page's language), with {name} placeholders.
"use strict";

(function () {
  const section = document.getElementById("proof");
  const dataBlock = document.getElementById("proof-data");
  if (!section || !dataBlock) return;
  const verdict = document.getElementById("proof-verdict");
  const steps = document.getElementById("proof-steps");
  const recheck = document.getElementById("proof-recheck");
  const encoder = new TextEncoder();

  function label(name, values) {
    const key = "l" + name.split("-").map((p) => p[0].toUpperCase() + p.slice(1)).join("");
    let text = section.dataset[key] || name;
    for (const [k, v] of Object.entries(values || {})) text = text.split("{" + k + "}").join(String(v));
    return text;
  }

  function fromBase64(text) {
    if (typeof text !== "string") throw new Error("not base64");
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  }

  function toBase64(bytes) {
    let raw = "";
    for (const b of new Uint8Array(bytes)) raw += String.fromCharCode(b);
    return btoa(raw);
  }

  function hex(bytes) {
    return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  // RFC 9162 section 2.1.3.2: the root an inclusion proof leads to.
  async function rootFromProof(index, size, leaf, proof) {
    if (!(index >= 0 && index < size)) throw new Error(`index ${index} is beyond tree size ${size}`);
    for (const p of proof) if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    for (const p of proof) {
      if (sn === 0) throw new Error("the proof is longer than the path to the root");
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error("the proof is shorter than the path to the root");
    return r;
  }

  // C2SP signed note: text, a blank line, lines "— name base64(key id || signature)".
  function parseNote(note) {
    const sep = note.lastIndexOf("\n\n");
    if (sep < 0 || !note.endsWith("\n")) throw new Error("no blank line before the signatures");
    const text = note.slice(0, sep + 1);
    const signatures = note.slice(sep + 2, -1).split("\n").map((line) => {
      if (!line.startsWith("\u2014 ")) throw new Error("a signature line must start with an em dash");
      const fields = line.slice(2).split(" ");
      if (fields.length !== 2) throw new Error("a signature line is '— <name> <base64>'");
      const blob = fromBase64(fields[1]);
      return { name: fields[0], keyId: blob.slice(0, 4), signature: blob.slice(4) };
    });
    const body = text.slice(0, -1).split("\n");
    if (body.length < 3 || !/^(0|[1-9][0-9]*)$/.test(body[1])) throw new Error("no origin, size and root");
    return { text, signatures, origin: body[0], size: Number(body[1]), root: fromBase64(body[2]) };
  }

  async function parseVkey(vkey) {
    // name+hexid+base64: the name has no "+", the base64 key may (split at the first two only)
    const text = vkey.trim();
    const first = text.indexOf("+");
    const second = first < 0 ? -1 : text.indexOf("+", first + 1);
    const parts = second < 0 ? [] : [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
    if (parts.length !== 3 || parts[1].length !== 8) throw new Error("not name+hexid+key");
    const raw = fromBase64(parts[2]);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 (type 0x01) key");
    const id = (await sha256(concat(encoder.encode(parts[0] + "\n"), raw))).slice(0, 4);
    if (hex(id) !== parts[1].toLowerCase()) throw new Error("the key id does not match the name and key");
    return { name: parts[0], keyId: id, publicKey: raw.slice(1) };
  }

  function show(state, text) {
    verdict.dataset.state = state;
    verdict.className = "aud-verdict " + (state === "verified" ? "ok" : state === "failed" ? "bad" : "");
    verdict.textContent = text;
  }

  async function check() {
    steps.textContent = "";
    show("checking", label("checking"));
    const failures = [];
    const step = (ok, text) => {
      const li = document.createElement("li");
      li.className = ok ? "ok" : "bad";
      li.dataset.ok = ok ? "1" : "0";
      li.textContent = (ok ? "\u2713 " : "\u2717 ") + text;
      steps.appendChild(li);
      if (!ok) failures.push(text);
    };
    let data;
    try {
      data = JSON.parse(dataBlock.textContent);
    } catch (error) {
      step(false, label("bad-data", { why: error.message }));
      show("failed", label("failed", { reason: failures.join("; ") }));
      return;
    }
    // 1. the leaf
    let leaf = null;
    try {
      const leafBytes = fromBase64(data.leaf);
      const claimed = JSON.parse(new TextDecoder().decode(leafBytes)).index;
      leaf = await leafHash(leafBytes);
      if (claimed !== data.index) step(false, label("bad-index", { claimed, index: data.index }));
      else step(true, label("leaf", { hash: hex(leaf) }));
    } catch (error) {
      step(false, label("bad-leaf", { why: error.message }));
    }
    // 2. the checkpoint note and the ledger's key
    let note = null;
    try { note = parseNote(String(data.note)); } catch (error) { step(false, label("bad-note", { why: error.message })); }
    let key = null;
    try { key = await parseVkey(String(data.vkey)); } catch (error) { step(false, label("bad-vkey", { why: error.message })); }
    // 3. the proof leads to the checkpoint's root, for the checkpoint's size
    if (note) {
      if (note.size !== data.treeSize) step(false, label("bad-size", { size: note.size, tree_size: data.treeSize }));
      else step(true, label("size", { size: note.size }));
    }
    if (leaf && note) {
      try {
        const proof = (data.proof || []).map(fromBase64);
        const root = await rootFromProof(data.index, note.size, leaf, proof);
        if (equal(root, note.root)) step(true, label("root", { root: hex(root) }));
        else step(false, label("bad-root", { root: hex(root), expected: hex(note.root) }));
      } catch (error) {
        step(false, label("bad-shape", { index: data.index, size: note ? note.size : data.treeSize, why: error.message }));
      }
    }
    // 4. the ledger key signed the checkpoint
    if (note && key) {
      const line = note.signatures.find((s) => s.name === key.name && equal(s.keyId, key.keyId));
      if (!line) {
        step(false, label("no-sig", { key: key.name }));
      } else {
        try {
          const pub = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
          const ok = await crypto.subtle.verify({ name: "Ed25519" }, pub, line.signature, encoder.encode(note.text));
          step(ok, label(ok ? "sig" : "bad-sig", { key: key.name }));
        } catch (error) {
          step(false, label("no-crypto", { why: error.message }));
        }
      }
    }
    if (failures.length === 0) show("verified", label("verified", { index: data.index, size: data.treeSize }));
    else show("failed", label("failed", { reason: failures.join("; ") }));
  }

  window.ibxCheckProof = check;
  window.ibxProofBase64 = toBase64;
  if (recheck) recheck.addEventListener("click", () => { check(); });
  check();
})();
