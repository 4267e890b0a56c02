// The auditor console in a real browser: Debian's chromium, headless, driven
// by playwright-core (which uses the system browser and downloads none).
//
//   scripts/ensure-browser.sh && node tests/console/browser.mjs
//   CREDGATE_BIN=target/debug/credgate CHROMIUM=/usr/bin/chromium node tests/console/browser.mjs
//   SCREENSHOTS=docs/screenshots node tests/console/browser.mjs   # refresh the committed screenshots
//
// Starts `credgate quickstart` on free loopback ports (like
// scripts/schemathesis.sh), sends a few API requests as a bank, then, with
// the auditor's client certificate (Playwright's `clientCertificates`): the
// search (form POST, the subject id not in any URL), an entry whose
// inclusion proof the page verifies ("已验证 / verified"), the same entry
// with the proof response tampered in flight (the failure is shown), the
// reports, the overdue objections, an export download, the search with
// JavaScript disabled; a bank's certificate gets 403 on /console/, no
// certificate fails the handshake; and every console request is in the log.
// Exits non-zero on any failure, and if the browser is missing.

import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.resolve(root, process.env.CREDGATE_BIN || "target/debug/credgate");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = path.resolve(root, process.env.SCREENSHOTS || "target/console-screenshots");
const BANK = "91370300164100001A";
const CERAMICS = "91370300MA3CXQ001R";

let failures = 0;
function check(cond, what) {
  if (cond) {
    console.log(`  ok    ${what}`);
  } else {
    failures++;
    console.log(`  FAIL  ${what}`);
  }
}
function must(cond, what) {
  check(cond, what);
  if (!cond) throw new Error(`cannot continue: ${what}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (!existsSync(browserPath)) {
  console.error(`console browser test: no browser at ${browserPath} (run scripts/ensure-browser.sh)`);
  process.exit(1);
}
if (!existsSync(bin)) {
  console.error(`console browser test: no gateway binary at ${bin} (cargo build)`);
  process.exit(1);
}

const work = mkdtempSync(path.join(os.tmpdir(), "credgate-console-"));
const certs = path.join(work, "certs");
const [port, admin] = [await freePort(), await freePort()];
const base = `https://localhost:${port}`;
const gw = spawn(
  bin,
  ["quickstart", "--certs", certs, "--data", path.join(work, "data"), "--policies", path.join(root, "policies"),
    "--listen", `127.0.0.1:${port}`, "--admin-listen", `127.0.0.1:${admin}`],
  { stdio: ["ignore", "pipe", "pipe"] },
);
let gwLog = "";
gw.stdout.on("data", (d) => (gwLog += d));
gw.stderr.on("data", (d) => (gwLog += d));
let gwExited = false;
gw.on("exit", () => (gwExited = true));
// Never leave the gateway behind, whatever ends this process.
process.on("exit", () => {
  if (!gwExited) gw.kill("SIGKILL");
});
process.on("uncaughtException", (e) => {
  console.error(`console browser test: ${e.stack || e}`);
  process.exit(1);
});

// The API as `who` (Node's TLS with that role's certificate).
function api(who, method, p, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      {
        host: "127.0.0.1", port, path: p, method, servername: "localhost",
        ca: readFileSync(path.join(certs, "ca.pem")),
        cert: readFileSync(path.join(certs, `${who}.pem`)),
        key: readFileSync(path.join(certs, `${who}-key.pem`)),
        headers: data ? { "content-type": "application/json" } : {},
        timeout: 20000,
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => {
          let json = null;
          try { json = JSON.parse(text); } catch { /* not JSON */ }
          resolve({ status: res.statusCode, json, text, headers: res.headers });
        });
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    if (data) req.write(data);
    req.end();
  });
}

function metrics() {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port: admin, path: "/metrics", timeout: 5000 }, (res) => {
      let t = "";
      res.on("data", (c) => (t += c));
      res.on("end", () => resolve(t));
    }).on("error", reject);
  });
}

function ready() {
  return new Promise((resolve) => {
    const r = http.get({ host: "127.0.0.1", port: admin, path: "/readyz", timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    r.on("error", () => resolve(false));
    r.on("timeout", () => { r.destroy(); resolve(false); });
  });
}

let browser;
let status = 0;
try {
  for (let i = 0; i < 300 && !(await ready()); i++) {
    must(!gwExited, "the gateway is running");
    await sleep(200);
  }
  must(await ready(), "the gateway is ready");
  mkdirSync(shots, { recursive: true });

  // Traffic to audit: a bank's queries about one company.
  for (let i = 0; i < 3; i++) {
    const r = await api("bank", "POST", "/v1/query", {
      subject: { type: "legal_person", id: CERAMICS }, purpose: "financing",
      fields: ["enterprise_name", "business_status", "penalty_content"],
    });
    must(r.status === 200, `bank query ${i} answered 200 (got ${r.status})`);
  }

  browser = await chromium.launch({ executablePath: browserPath, headless: true, args: ["--no-sandbox"] });
  const cert = (who) => [{ origin: base, certPath: path.join(certs, `${who}.pem`), keyPath: path.join(certs, `${who}-key.pem`) }];
  // The dev CA is not in the browser's trust store; the certificate that
  // matters here is the client's.
  const auditor = await browser.newContext({ clientCertificates: cert("auditor"), ignoreHTTPSErrors: true, locale: "zh-CN", viewport: { width: 1200, height: 900 } });
  const page = await auditor.newPage();
  const urls = [];
  page.on("request", (r) => urls.push(r.url()));
  const cspViolations = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  const scriptErrors = [];
  page.on("pageerror", (e) => scriptErrors.push(String(e)));

  console.log("search");
  let resp = await page.goto(`${base}/console/`);
  must(resp && resp.status() === 200, `GET /console/ is 200 for the auditor (got ${resp && resp.status()})`);
  const csp = resp.headers()["content-security-policy"] || "";
  check(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline"), `CSP without inline script: ${csp}`);
  check((await page.locator("script:not([src])").count()) === 0, "no inline script on the page");
  check((await page.locator("[style]").count()) === 0, "no inline style attribute on the page");
  await page.screenshot({ path: path.join(shots, "console-search.png"), fullPage: true });

  await page.fill("#f-org", BANK);
  await page.selectOption("#f-subject_type", "legal_person");
  await page.fill("#f-subject_id", CERAMICS);
  await page.selectOption("#f-action", "query");
  const [searchReq] = await Promise.all([
    page.waitForRequest((r) => r.url().endsWith("/console/search")),
    page.click("#search-submit"),
  ]);
  await page.waitForLoadState("load");
  check(searchReq.method() === "POST", "the search is a POST");
  check((searchReq.postData() || "").includes(`subject_id=${CERAMICS}`), "the subject id travels in the form body");
  const count = Number(await page.textContent("#result-count"));
  check(count === 3, `the search finds the bank's 3 queries (found ${count})`);
  const hashShown = await page.locator("main code").first().textContent();
  check(/^[a-z0-9]{1,16}:[0-9a-f]{64}$/.test(hashShown || ""), "the page shows the subject's keyed hash (one subject key: one hash, with its key id)");
  await page.screenshot({ path: path.join(shots, "console-results.png"), fullPage: true });

  console.log("entry, verified in the browser");
  const link = page.locator("a.entry-link").first();
  const seq = Number(await link.textContent());
  // Wait until a signed checkpoint covers it and the entry after it (one
  // every 10 s by default), so its proof has at least one hash to tamper with.
  let covered = 0;
  for (let i = 0; i < 120 && covered <= seq + 1; i++) {
    const cp = await api("auditor", "GET", "/v1/audit/checkpoint");
    covered = (cp.json && cp.json.tree_size) || 0;
    if (covered <= seq + 1) await sleep(500);
  }
  must(covered > seq + 1, `a signed checkpoint covers entry ${seq} (tree size ${covered})`);
  await Promise.all([page.waitForURL(`**/console/entries/${seq}`), link.click()]);
  await page.waitForSelector("#verify[data-result]", { timeout: 30000 });
  let result = await page.getAttribute("#verify", "data-result");
  let statusText = await page.textContent("#verify-status");
  check(result === "verified", `entry ${seq}: ${statusText}`);
  check((statusText || "").includes("已验证") && statusText.includes("verified"), "the page says 已验证 / verified");
  await page.screenshot({ path: path.join(shots, "console-entry-verified.png"), fullPage: true });

  console.log("entry, pinned verifier key");
  const published = (await api("auditor", "GET", "/v1/audit/checkpoint")).json.verifier_key;
  const pin = async (key) => {
    await page.fill("#pin-key", key);
    await Promise.all([page.waitForEvent("load"), page.click("#pin-save")]);
    await page.waitForSelector("#verify[data-result]", { timeout: 30000 });
    return [await page.getAttribute("#verify", "data-result"), await page.textContent("#verify")];
  };
  let [pinned, shown] = await pin(published);
  check(pinned === "verified" && shown.includes("the same as the published one"), "verified with the key pinned in the browser");
  // Another Ed25519 key under the same name: the checkpoint is not signed by it.
  const other = crypto.generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const name = published.split("+")[0];
  const raw = Buffer.concat([Buffer.from([1]), other]);
  const id = crypto.createHash("sha256").update(Buffer.concat([Buffer.from(name + "\n"), raw])).digest().subarray(0, 4).toString("hex");
  [pinned, shown] = await pin(`${name}+${id}+${raw.toString("base64")}`);
  check(pinned === "failed" && shown.includes("no signature by the log's key"), "a different pinned key: the checkpoint does not verify");
  [pinned] = await pin("");
  check(pinned === "verified", "pin cleared: verified with the published key again");

  console.log("entry, tampered proof");
  await page.route("**/v1/audit/proof/inclusion", async (route) => {
    const real = await route.fetch();
    const j = await real.json();
    if (!Array.isArray(j.proof) || j.proof.length === 0) {
      failures++;
      console.log("  FAIL  the proof to tamper with is empty");
      return route.fulfill({ response: real });
    }
    const bytes = Buffer.from(j.proof[0], "base64");
    bytes[0] ^= 0x01;
    j.proof[0] = bytes.toString("base64");
    await route.fulfill({ response: real, json: j });
  });
  await page.reload();
  await page.waitForSelector("#verify[data-result]", { timeout: 30000 });
  result = await page.getAttribute("#verify", "data-result");
  statusText = await page.textContent("#verify-status");
  check(result === "failed", `tampered proof: ${statusText}`);
  check((statusText || "").includes("验证失败") && statusText.includes("root"), "the page names the failure");
  await page.screenshot({ path: path.join(shots, "console-entry-tampered.png"), fullPage: true });
  await page.unrouteAll();

  console.log("reports, overdue objections, export");
  resp = await page.goto(`${base}/console/reports`);
  check(resp.status() === 200, "GET /console/reports is 200");
  check((await page.locator("#chart-timeline rect").count()) > 0, "the volume-over-time chart has bars");
  check((await page.locator("#chart-volume rect").count()) > 0, "the volume-per-organisation chart has bars");
  check((await page.locator("#chart-subjects rect").count()) > 0, "the most-queried-subjects chart has bars");
  await page.screenshot({ path: path.join(shots, "console-reports.png"), fullPage: true });
  resp = await page.goto(`${base}/console/objections/overdue`);
  check(resp.status() === 200, "GET /console/objections/overdue is 200");
  check(/^[0-9]+$/.test((await page.textContent("#overdue-count")) || ""), "the overdue count is shown");
  await page.screenshot({ path: path.join(shots, "console-overdue.png"), fullPage: true });
  resp = await page.goto(`${base}/console/export`);
  check(resp.status() === 200, "GET /console/export is 200");
  await page.screenshot({ path: path.join(shots, "console-export.png"), fullPage: true });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-submit")]);
  const saved = path.join(work, "console-export.jsonl");
  await download.saveAs(saved);
  const file = readFileSync(saved, "utf8").trim().split("\n");
  check(download.suggestedFilename() === "credgate-audit.jsonl", `download named ${download.suggestedFilename()}`);
  const header = JSON.parse(file[0]);
  check(header.tree_size > seq && header.end - header.start === file.length - 1,
    `the export holds entries ${header.start}..${header.end} of tree size ${header.tree_size}`);
  const vkey = (await api("auditor", "GET", "/v1/audit/checkpoint")).json.verifier_key;
  const verify = spawnSync(bin, ["audit", "verify", saved, "--key", vkey], { encoding: "utf8" });
  check(verify.status === 0, `credgate audit verify accepts the download: ${(verify.stdout + verify.stderr).trim().split("\n")[0]}`);

  console.log("no JavaScript");
  const nojs = await browser.newContext({ clientCertificates: cert("auditor"), ignoreHTTPSErrors: true, javaScriptEnabled: false });
  const p2 = await nojs.newPage();
  await p2.goto(`${base}/console/`);
  await p2.fill("#f-subject_id", CERAMICS);
  await Promise.all([p2.waitForURL("**/console/search"), p2.click("#search-submit")]);
  const n2 = Number(await p2.textContent("#result-count"));
  check(n2 >= 3, `the search works without JavaScript (${n2} entries)`);
  await nojs.close();

  console.log("other certificates");
  const bank = await browser.newContext({ clientCertificates: cert("bank"), ignoreHTTPSErrors: true });
  const p3 = await bank.newPage();
  resp = await p3.goto(`${base}/console/`);
  check(resp.status() === 403, `a bank's certificate gets ${resp.status()} on /console/`);
  check((await p3.textContent("body")).includes("role_not_permitted"), "with code role_not_permitted");
  await bank.close();
  const failedHandshakes = async () => Number((/^credgate_handshake_failures_total (\d+)$/m.exec(await metrics()) || [])[1] || NaN);
  const before = await failedHandshakes();
  const anon = await browser.newContext({ ignoreHTTPSErrors: true });
  const p4 = await anon.newPage();
  let refused = false;
  try {
    await p4.goto(`${base}/console/`, { timeout: 20000 });
  } catch (e) {
    refused = true;
    console.log(`        (${String(e.message).split("\n")[0]})`);
  }
  check(refused, "no client certificate: the page does not load");
  const after = await failedHandshakes();
  check(after > before, `the gateway refused the handshake (credgate_handshake_failures_total ${before} -> ${after})`);
  await anon.close();

  console.log("every console request is audited");
  const find = async (q) => (await api("auditor", "POST", "/v1/audit/search", q)).json.entries;
  const searches = await find({ action: "console_search", subject: { type: "legal_person", id: CERAMICS } });
  check(searches.length >= 2, `console searches for the company are in the log under its hash (${searches.length})`);
  check(searches.every((e) => e.entry.subject === hashShown), "with the hash the page showed");
  const entries = await find({ action: "console_entry" });
  check(entries.length >= 2 && entries.every((e) => e.entry.status === 200), `entry pages audited (${entries.length})`);
  const proofs = await find({ action: "audit_inclusion_proof" });
  check(proofs.length >= 2, `the page's proof fetches audited (${proofs.length})`);
  const exports = await find({ action: "console_export" });
  check(exports.length === 1 && exports[0].entry.status === 200, "the export download audited");
  const denied = await find({ action: "console_home", outcome: "role_not_permitted" });
  check(denied.length === 1 && denied[0].entry.org === BANK && denied[0].entry.status === 403, "the bank's 403 audited");
  const leaked = urls.filter((u) => u.includes(CERAMICS));
  check(leaked.length === 0, `the subject id is in no URL the browser requested (${urls.length} requests)`);
  check(cspViolations.length === 0, `no Content-Security-Policy violation in the pages (${cspViolations.join("; ")})`);
  check(scriptErrors.length === 0, `no script error in the pages (${scriptErrors.join("; ")})`);
  await auditor.close();
} catch (e) {
  failures++;
  console.error(`console browser test: ${e.stack || e}`);
} finally {
  if (browser) await browser.close();
  gw.kill("SIGTERM");
  for (let i = 0; i < 100 && !gwExited; i++) await sleep(100);
  if (failures) {
    status = 1;
    console.error(`console browser test: ${failures} failure(s); gateway log:\n${gwLog.slice(-4000)}`);
  } else {
    console.log(`console browser test: all checks passed (screenshots in ${path.relative(root, shots)})`);
  }
  rmSync(work, { recursive: true, force: true });
}
process.exit(status);
