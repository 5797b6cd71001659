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
