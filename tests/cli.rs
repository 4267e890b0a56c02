//! The policy tools as an official reviewing a policy change uses them: the
//! real binary, real files, exit codes and messages.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TempDir, policies};

fn credgate(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of the sample policies with `edit` applied to one file.
fn edited(file: &str, edit: impl FnOnce(String) -> String) -> TempDir {
    let dir = TempDir::new("policy");
    for entry in std::fs::read_dir(policies()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.0.join(p.file_name().unwrap())).unwrap();
    }
    let target = dir.0.join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    std::fs::write(&target, edit(text)).unwrap();
    dir
}

fn line_of(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn sample_policies_pass_the_check() {
    let dir = policies();
    let (ok, out) = credgate(&["policy", "check", dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("ok"), "{out}");
    // The hash every audit entry records for this policy.
    let hash = credgate::reload::policy_hash(&dir, None).unwrap();
    assert!(out.contains(&format!("policy hash {hash}")), "{out}");
}

#[test]
fn a_catalogued_prohibited_field_fails_with_file_and_line() {
    for (name, label, category) in [
        ("blood_type", "血型", "blood_type"),
        ("religious_belief", "宗教信仰", "religion"),
        ("ｆｉｎｇｅｒｐｒｉｎｔ_template", "指纹模板", "fingerprint"),
        ("medical_notes", "既往病史", "disease"),
    ] {
        let dir = edited("catalog.toml", |t| {
            format!(
                "{t}\n[[item]]\nid = \"smuggled\"\nlabel_zh = \"x\"\nlabel_en = \"x\"\nsubject = \"natural_person\"\n\n\
                 [[item.field]]\nname = \"{name}\"\nlabel_zh = \"{label}\"\nlabel_en = \"x\"\nclass = \"public\"\n"
            )
        });
        let (ok, out) = credgate(&["policy", "check", dir.0.to_str().unwrap()]);
        assert!(!ok, "{name} was accepted: {out}");
        let catalog = dir.0.join("catalog.toml");
        let line = line_of(&catalog, &format!("name = \"{name}\""));
        assert!(
            out.contains(&format!("catalog.toml:{line}:")),
            "{name}: no file:line in {out}"
        );
        assert!(
            out.contains(category),
            "{name}: category not named in {out}"
        );
    }
}

#[test]
fn a_grant_exposing_a_prohibited_field_fails() {
    let dir = edited("grants.toml", |t| {
        format!(
            "{t}\n[[grant]]\nrole = \"bank\"\npurpose = \"financing\"\nfield = \"Blood_Type\"\naction = \"return\"\n"
        )
    });
    let (ok, out) = credgate(&["policy", "check", dir.0.to_str().unwrap()]);
    assert!(!ok, "{out}");
    let line = line_of(&dir.0.join("grants.toml"), "field = \"Blood_Type\"");
    assert!(out.contains(&format!("grants.toml:{line}:")), "{out}");
    assert!(out.contains("prohibited"), "{out}");
}

#[test]
fn unknown_keys_roles_and_tags_fail_with_file_and_line() {
    for (file, edit, needle) in [
        ("grants.toml", "role = \"bank\"", "role = \"banker\""),
        ("catalog.toml", "class = \"public\"", "class = \"publik\""),
        (
            "organisations.toml",
            "roles = [\"bank\"]",
            "rolez = [\"bank\"]",
        ),
    ] {
        let dir = edited(file, |t| t.replacen(edit, needle, 1));
        let (ok, out) = credgate(&["policy", "check", dir.0.to_str().unwrap()]);
        assert!(!ok, "{file}: {needle} accepted");
        let line = line_of(&dir.0.join(file), needle);
        assert!(out.contains(&format!("{file}:{line}:")), "{file}: {out}");
    }
}

#[test]
fn income_cannot_be_classified_as_public() {
    let dir = edited("catalog.toml", |t| {
        t.replacen(
            "class = \"personal_consent\"\nconsent_category = \"income\"",
            "class = \"public\"",
            1,
        )
    });
    let (ok, out) = credgate(&["policy", "check", dir.0.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("income"), "{out}");
}

#[test]
fn explain_prints_reasons_and_bilingual_labels() {
    let dir = policies();
    let (ok, out) = credgate(&[
        "policy",
        "explain",
        "--dir",
        dir.to_str().unwrap(),
        "--org",
        "91370300164100001A",
        "--purpose",
        "financing",
        "--fields",
        "enterprise_name,monthly_income,residence_address,religion",
    ]);
    assert!(ok, "{out}");
    for needle in [
        "企业名称 / Enterprise name",
        "consent_required",
        "minimised",
        "prohibited",
        "authorised",
    ] {
        assert!(out.contains(needle), "missing {needle} in\n{out}");
    }
    let (ok, out) = credgate(&[
        "policy",
        "explain",
        "--dir",
        dir.to_str().unwrap(),
        "--org",
        "91370300164100001A",
        "--purpose",
        "gossip",
    ]);
    assert!(!ok);
    assert!(out.contains("unknown purpose"), "{out}");
}

#[test]
fn invalid_config_exits_non_zero_with_file_and_line() {
    let dir = TempDir::new("cfg");
    let cfg = dir.0.join("credgate.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:1\"\nmax_conections = 5\n",
    )
    .unwrap();
    let (ok, out) = credgate(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("credgate.toml:3"), "{out}");
}

/// The role × endpoint matrix generated from `policies/` is pinned: a change
/// of who may call what is a reviewed change of this file too
/// (`UPDATE_GOLDEN=1 cargo test --test cli` rewrites it).
#[test]
fn access_matrix_matches_the_golden_file() {
    let (ok, out) = credgate(&[
        "policy",
        "explain",
        "--access",
        "--dir",
        policies().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/access_matrix.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    assert_eq!(out, std::fs::read_to_string(&golden).unwrap());
    // Every endpoint of the table is a row.
    for e in credgate::endpoint::Endpoint::ALL {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{} ", e.action()))),
            "{e}"
        );
    }
}

#[test]
fn access_policy_mistakes_fail_with_file_and_line() {
    for (edit, needle, message) in [
        (
            ("query = [", "query = [\"auditor\", "),
            "query = [",
            "role 'auditor' may not call query: the auditor reads the audit log, never credit data",
        ),
        (
            (
                "submit_records = [\"department\"]",
                "submit_records = [\"department\", \"bank\"]",
            ),
            "submit_records =",
            "role 'bank' may not call submit_records: only departments submit records",
        ),
        (
            (
                "check = [\"department\"]",
                "check = [\"department\", \"judge\"]",
            ),
            "check = [",
            "unknown role 'judge'",
        ),
        (
            ("check = [\"department\"]", "chekc = [\"department\"]"),
            "chekc =",
            "unknown endpoint 'chekc'",
        ),
        (
            (
                "audit_export = [\"auditor\"]",
                "audit_export = [\"auditor\", \"auditor\"]",
            ),
            "audit_export =",
            "role 'auditor' listed twice",
        ),
    ] {
        let dir = edited("access.toml", |t| t.replacen(edit.0, edit.1, 1));
        let file = dir.0.join("access.toml");
        let (ok, out) = credgate(&["policy", "check", dir.0.to_str().unwrap()]);
        assert!(!ok, "{out}");
        let want = format!("{}:{}: {message}", file.display(), line_of(&file, needle));
        assert!(out.contains(&want), "want {want}\ngot {out}");
    }
    // Leaving an endpoint out is an error too (an empty list means nobody).
    let dir = edited("access.toml", |t| {
        t.replacen("check_feedback = [\"department\"]\n", "", 1)
    });
    let (ok, out) = credgate(&["policy", "check", dir.0.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("endpoint 'check_feedback' is not listed"),
        "{out}"
    );
    let dir = edited("access.toml", |t| {
        t.replacen(
            "check_feedback = [\"department\"]",
            "check_feedback = []",
            1,
        )
    });
    let (ok, out) = credgate(&["policy", "check", dir.0.to_str().unwrap()]);
    assert!(ok, "{out}");
}

/// `quickstart` reuses an existing config (hand edits stay) unless told to
/// `--reset`, and a second serving process on the same SQLite store is
/// refused at start, naming the holder's pid.
#[test]
fn quickstart_keeps_the_config_and_one_process_serves_a_store() {
    let dir = TempDir::new("qs");
    let data = dir.0.join("data");
    let certs = dir.0.join("certs");
    let free = || common::free_addr().to_string();
    let (l1, a1) = (free(), free());
    let pol = policies();
    let qs = |extra: &[&str]| {
        let mut args = vec![
            "quickstart",
            "--no-serve",
            "--data",
            data.to_str().unwrap(),
            "--certs",
            certs.to_str().unwrap(),
            "--policies",
            pol.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        credgate(&args)
    };
    let (ok, out) = qs(&["--listen", &l1, "--admin-listen", &a1]);
    assert!(ok, "{out}");
    let cfg = data.join("credgate.toml");
    let edited = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[server]\n",
        "[server]\nquota_distinct_subjects_per_hour = 7\n",
        1,
    );
    std::fs::write(&cfg, &edited).unwrap();
    let (ok, out) = qs(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("reusing"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        edited,
        "hand edit kept"
    );
    assert!(
        out.contains(&l1),
        "examples use the config's listener: {out}"
    );

    let mut first = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it serves (its lock is taken before the store opens).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&l1).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "first gateway never served"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (ok, out) = credgate(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok, "a second process must not serve the same store: {out}");
    assert!(
        out.contains(&format!(
            "locked by another credgate process (pid {})",
            first.id()
        )),
        "{out}"
    );
    let (ok, out) = qs(&["--reset"]);
    assert!(!ok, "no reset under a serving gateway: {out}");
    let _ = first.kill();
    let _ = first.wait();
    let (ok, out) = qs(&["--reset"]);
    assert!(ok, "{out}");
    assert!(
        !std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("quota_distinct"),
        "regenerated"
    );
}
