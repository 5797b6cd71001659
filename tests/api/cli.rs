use std::process::Command;

use serde_json::json;

use crate::harness::{binary, terminate};

#[test]
fn check_config_lists_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "listen = \"nowhere\"\ncolour = 1\n[delivery]\nprovider = \"pigeon\"\nmax_characters = 0\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    for key in [
        "listen:",
        "colour:",
        "delivery.provider:",
        "delivery.max_characters:",
    ] {
        assert!(err.contains(key), "{key} not reported in:\n{err}");
    }
}

#[test]
fn check_config_accepts_a_valid_file_and_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:8080\"\n").unwrap();
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(binary())
        .args(["check-config"])
        .env("TSUNAGI_CONFIG", &path)
        .env("TSUNAGI_LISTEN", "not an address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen:"));
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let out = Command::new(binary())
        .arg("migrate")
        .env("TSUNAGI_DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());
}

#[tokio::test]
async fn first_start_without_keys_prints_one_key_once_and_keys_create_adds_more() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(binary());
        cmd.args(args)
            .env("TSUNAGI_DATABASE_URL", &db)
            .env("TSUNAGI_LISTEN", "127.0.0.1:0");
        cmd
    };
    let mut child = run(&["serve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines.next().unwrap().unwrap();
    let key = first.rsplit(' ').next().unwrap().to_string();
    assert!(
        first.contains("Created API key") && key.starts_with("tsk_"),
        "{first}"
    );
    let listening = lines.next().unwrap().unwrap();
    let base = listening
        .strip_prefix("tsunagi listening on ")
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({"to": "09012345678", "body": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    terminate(&child);
    assert!(child.wait().unwrap().success());

    let made = run(&["keys", "create", "--name", "ci"]).output().unwrap();
    assert!(made.status.success());
    let second_key = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert!(second_key.starts_with("tsk_"));

    let mut child = run(&["serve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .next()
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with("tsunagi listening on "),
        "a key was printed again: {line}"
    );
    let base = line.strip_prefix("tsunagi listening on ").unwrap();
    for k in [&key, &second_key] {
        let r = client
            .get(format!("{base}/v1/messages"))
            .bearer_auth(k)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

/// The config files the README and the guides show, each as written.
fn documented_configs() -> Vec<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut configs = Vec::new();
    for doc in [
        "README.md",
        "docs/salesforce.md",
        "docs/kintone.md",
        "docs/kintone.ja.md",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap();
        for (i, block) in text.split("```toml\n").skip(1).enumerate() {
            let toml = block.split("```").next().unwrap();
            configs.push((format!("{doc} block {}", i + 1), toml.to_string()));
        }
    }
    configs
}

/// Senders as operators write them, each where it may be written.
fn sender_configs() -> Vec<(String, String)> {
    let smpp = |source: &str| {
        format!(
            "[delivery]\nprovider = \"smpp\"\n[providers.smpp]\nhost = \"127.0.0.1\"\nport = 9\n\
             system_id = \"t\"\npassword = \"p\"\nsource_addr = \"{source}\"\n"
        )
    };
    let twilio = |from: &str| {
        format!(
            "[delivery]\nprovider = \"twilio\"\n[providers.twilio]\naccount_sid = \"AC1\"\n\
             auth_token = \"t\"\nfrom = \"{from}\"\nbase_url = \"http://127.0.0.1:9\"\n"
        )
    };
    let mut configs = Vec::new();
    for code in [
        "00051234",
        "000512345",
        "0005123456",
        "0005-123-456",
        "０００５１２３４５６",
    ] {
        configs.push((format!("source_addr {code}"), smpp(code)));
        configs.push((format!("twilio from {code}"), twilio(code)));
        configs.push((
            format!("default_from {code}"),
            format!("[delivery]\ndefault_from = \"{code}\"\nsenders = [\"{code}\", \"SHOP\"]\n"),
        ));
    }
    for bad in ["0005123", "00051234567", "000512345678"] {
        configs.push((format!("source_addr {bad}"), smpp(bad)));
        configs.push((format!("twilio from {bad}"), twilio(bad)));
    }
    configs
}

/// Whether `serve` with `config` reaches "listening" (then it is stopped), or how it failed.
fn serves(dir: &std::path::Path, config: &std::path::Path) -> Result<(), String> {
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("TSUNAGI_LISTEN", "127.0.0.1:0")
        .env(
            "TSUNAGI_DATABASE_URL",
            format!("sqlite://{}", dir.join("serve.db").display()),
        )
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if line.starts_with("tsunagi listening on ") {
                let _ = tx.send(());
            }
        }
    });
    let listening = rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok();
    terminate(&child);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    if listening {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn every_config_check_config_accepts_also_starts() {
    let mut accepted = 0;
    let mut refused = Vec::new();
    for (name, text) in documented_configs().into_iter().chain(sender_configs()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsunagi.toml");
        std::fs::write(&path, &text).unwrap();
        let checked = Command::new(binary())
            .args(["check-config", "--config"])
            .arg(&path)
            .env("TSUNAGI_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        if !checked.status.success() {
            refused.push(name);
            continue;
        }
        accepted += 1;
        if let Err(stderr) = serves(dir.path(), &path) {
            panic!("check-config accepts {name} but serve does not start:\n{text}\n{stderr}");
        }
    }
    // Every 0005 code of 8 to 10 digits and every documented block that is a whole file.
    assert!(
        accepted >= 20,
        "only {accepted} accepted; refused: {refused:?}"
    );
    for bad in ["0005123", "00051234567", "000512345678"] {
        assert!(
            refused.contains(&format!("source_addr {bad}")),
            "a {}-digit 0005 code was accepted",
            bad.len()
        );
    }
}
