// credgate auditor console: in-browser verification of an entry's inclusion
// proof against the log's signed checkpoint (RFC 6962 / RFC 9162 hashes with
// WebCrypto SHA-256, the C2SP signed note with WebCrypto Ed25519).
//
// Served from the gateway itself (Content-Security-Policy script-src 'self');
// no inline script, no third-party code. Every page except an entry's works
// without this file.
"use strict";

(function () {
  const enc = new TextEncoder();

  function b64(s) {
    if (typeof s !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
      throw new Error("not canonical base64 / 非规范 base64");
    }
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function concat(...parts) {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (entry) => sha256(concat(new Uint8Array([0]), enc.encode(entry)));
  const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }

  // RFC 9162 §2.1.3.2: the root an inclusion proof implies.
  async function rootFromInclusion(index, size, leaf, proof) {
    let fn = BigInt(index);
    let sn = BigInt(size) - 1n;
    if (fn > sn) throw new Error("index outside the tree / 序号超出树");
    let r = leaf;
    for (const p of proof) {
      if (p.length !== 32) throw new Error("proof hash is not 32 bytes / 证明哈希长度错误");
      if (sn === 0n) throw new Error("proof too long / 证明过长");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        if ((fn & 1n) === 0n) {
          while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("proof too short / 证明过短");
    return r;
  }

  // A C2SP signed note: the signed text, its three checkpoint lines and the
  // signature lines.
  function parseNote(note) {
    const cut = note.indexOf("\n\n");
    if (cut < 0) throw new Error("checkpoint has no signature / 检查点无签名");
    const text = note.slice(0, cut + 1);
    const lines = text.slice(0, -1).split("\n");
    if (lines.length !== 3) throw new Error("checkpoint is not origin, size, root / 检查点格式错误");
    if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Error("bad tree size / 树大小错误");
    const sigs = note.slice(cut + 2).split("\n").filter((l) => l.length > 0).map((l) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(l);
      if (!m) throw new Error("bad signature line / 签名行格式错误");
      return { name: m[1], blob: b64(m[2]) };
    });
    return { text, origin: lines[0], size: BigInt(lines[1]), root: b64(lines[2]), sigs };
  }

  // `<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 key)>`.
  async function parseVerifierKey(vkey) {
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(vkey || "");
    if (!m) throw new Error("bad verifier key / 验证密钥格式错误");
    const raw = b64(m[3]);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 verifier key / 非 Ed25519 密钥");
    const id = (await sha256(concat(enc.encode(m[1] + "\n"), raw))).slice(0, 4);
    const hex = Array.from(id, (b) => b.toString(16).padStart(2, "0")).join("");
    if (hex !== m[2]) throw new Error("verifier key id does not match its key / 密钥编号不符");
    return { name: m[1], id, pub: raw.slice(1) };
  }

  async function verifySignature(note, key) {
    const mine = note.sigs.filter((s) => s.name === key.name && s.blob.length === 68 && equal(s.blob.slice(0, 4), key.id));
    if (mine.length === 0) throw new Error("no signature by the log's key / 无日志密钥签名");
    let k;
    try {
      k = await crypto.subtle.importKey("raw", key.pub, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      return "unsupported";
    }
    for (const s of mine) {
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, k, s.blob.slice(4), enc.encode(note.text));
      if (!ok) throw new Error("checkpoint signature does not verify / 检查点签名无效");
    }
    return "ok";
  }

  async function postJson(path, body) {
    const r = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    const j = await r.json();
    if (!r.ok) {
      const code = j && j.error ? j.error.code : String(r.status);
      const err = new Error(code + ": " + (j && j.error ? j.error.message : ""));
      err.code = code;
      throw err;
    }
    return j;
  }

  async function verifyEntry(panel) {
    const status = document.getElementById("verify-status");
    const steps = document.getElementById("verify-steps");
    const step = (cls, zh, en) => {
      const li = document.createElement("li");
      li.className = cls;
      li.textContent = zh + " " + en;
      steps.appendChild(li);
    };
    const done = (cls, zh, en) => {
      panel.classList.remove("pending");
      panel.classList.add(cls);
      status.textContent = zh + " / " + en;
      panel.dataset.result = cls;
    };
    const seq = BigInt(panel.dataset.seq);
    status.textContent = "正在验证… Verifying…";
    try {
      const cp = await fetch("/v1/audit/checkpoint", { credentials: "same-origin", cache: "no-store" }).then((r) => r.json());
      // A key the auditor pinned in this browser wins over the published one.
      const pinned = pinnedKey();
      const key = await parseVerifierKey(pinned || cp.verifier_key);
      if (!pinned) {
        step("warn", "使用网关公布的验证密钥（未固定）：", cp.verifier_key + " — the gateway's published key (not pinned); compare it with the key you hold");
      } else if (pinned === cp.verifier_key) {
        step("ok", "使用已固定的验证密钥，与公布的一致：", pinned + " — your pinned key, the same as the published one");
      } else {
        step("warn", "使用已固定的验证密钥，与公布的不同：", pinned + " — your pinned key differs from the published " + cp.verifier_key);
      }
      let proof;
      try {
        proof = await postJson("/v1/audit/proof/inclusion", { seq: Number(seq) });
      } catch (e) {
        if (e.code === "invalid_range" || e.code === "no_checkpoint") {
          done("pending", "尚无覆盖此条目的签名检查点，请稍后刷新", "no signed checkpoint covers this entry yet; reload shortly");
          return;
        }
        throw e;
      }
      const canonical = document.getElementById("canonical").textContent;
      if (proof.entry !== canonical || BigInt(proof.seq) !== seq) {
        throw new Error("the proven entry is not the one shown / 证明的条目与所示不符");
      }
      step("ok", "条目文本一致", "entry text matches the proof's");
      const note = parseNote(proof.checkpoint || "");
      if (note.size !== BigInt(proof.tree_size)) throw new Error("proof and checkpoint tree sizes differ / 树大小不一致");
      const sig = await verifySignature(note, key);
      if (sig === "ok") step("ok", "检查点签名有效（Ed25519）", "checkpoint signature valid (Ed25519), tree size " + note.size);
      else step("warn", "此浏览器不支持 Ed25519，未检查签名", "this browser has no WebCrypto Ed25519: signature not checked");
      const leaf = await leafHash(proof.entry);
      const root = await rootFromInclusion(seq, note.size, leaf, proof.proof.map(b64));
      if (!equal(root, note.root)) throw new Error("inclusion proof does not lead to the checkpoint's root / 包含证明与检查点根哈希不符");
      step("ok", "包含证明有效", "inclusion proof leads to the signed root (" + proof.proof.length + " hashes)");
      if (sig === "ok") done("verified", "已验证", "verified");
      else done("partial", "包含证明已验证，签名未检查", "proof verified, signature not checked");
    } catch (e) {
      step("fail", "失败：", e.message);
      done("failed", "验证失败", "verification failed: " + e.message);
    }
  }

  const PIN = "credgate.console.verifierKey";
  function pinnedKey() {
    try { return localStorage.getItem(PIN) || ""; } catch (e) { return ""; }
  }

  // The pin form (hidden without JavaScript): keep the verifier key you
  // were given out of band in this browser's storage.
  function pinForm() {
    const box = document.getElementById("pin");
    if (!box) return;
    const input = document.getElementById("pin-key");
    input.value = pinnedKey();
    box.hidden = false;
    box.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      try {
        if (v) localStorage.setItem(PIN, v); else localStorage.removeItem(PIN);
      } catch (e) { /* storage disabled: nothing pinned */ }
      location.reload();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    pinForm();
    const panel = document.getElementById("verify");
    if (panel) verifyEntry(panel);
  });
})();
