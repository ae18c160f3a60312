//! The `judge test` / `judge problem` command lines, through the built binary.

use std::process::Command;

use super::{repo, sandbox};

fn judge_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_judge"));
    c.current_dir(repo());
    c
}

#[test]
fn judge_test_json_is_one_object_and_exit_codes_follow_the_verdict() {
    let Some(_sb) = sandbox() else {
        return;
    };
    let out = judge_bin()
        .args([
            "test",
            "problems/aplusb/submissions/accepted/aplusb.cpp",
            "--problem",
            "problems/aplusb",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "exactly one JSON object: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["verdict"], "AC");
    assert_eq!(v["score"], serde_json::Value::Null);
    assert_eq!(v["compile"]["ok"], true);
    assert_eq!(v["tests"].as_array().unwrap().len(), 6);
    assert_eq!(v["tests"][0]["name"], "sample/1");
    for key in ["verdict", "time_ms", "memory_kib", "message"] {
        assert!(v["tests"][0].get(key).is_some(), "{key}");
    }

    let out = judge_bin()
        .args([
            "test",
            "problems/aplusb/submissions/wrong_answer/int32.cpp",
            "--problem",
            "problems/aplusb",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "WA exits 10");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("test "), "{table}");
    assert!(
        table.contains("secret/03-int32") && table.contains("WA"),
        "{table}"
    );
    assert!(
        table.trim_end().ends_with("verdict: WA (Wrong Answer)"),
        "{table}"
    );

    let out = judge_bin()
        .args([
            "test",
            "problems/sumbig/submissions/partially_accepted/int32.cpp",
            "--problem",
            "problems/sumbig",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(17), "partial score exits 17");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["verdict"].as_str(), v["score"].as_f64()),
        (Some("AC"), Some(30.0))
    );

    let out = judge_bin()
        .args([
            "test",
            "problems/aplusb/submissions/accepted/aplusb.py",
            "--problem",
            "problems/aplusb",
            "--lang",
            "c",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(15),
        "python compiled as C: CE exits 15"
    );
}

#[test]
fn judge_problem_new_then_verify() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("newprob");
    let out = judge_bin()
        .args(["problem", "new"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("problem.yaml").is_file());
    let Some(_sb) = sandbox() else {
        return;
    };
    let out = judge_bin()
        .args(["problem", "verify", "--json"])
        .arg(&dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["submissions"].as_array().unwrap().len(), 3);

    // Break it: the accepted Python solution now answers wrong; verify must say so.
    std::fs::write(dir.join("submissions/accepted/solution.py"), "print(0)\n").unwrap();
    let out = judge_bin()
        .args(["problem", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("MISMATCH") && text.contains("accepted/solution.py"),
        "{text}"
    );
}

/// The trusted pool's `process` backend judges the same way (no mount namespace: the
/// Python syntax check must write nothing to the shared /tmp).
#[test]
fn judge_test_on_the_process_backend() {
    let Some(_sb) = sandbox() else {
        return;
    };
    for sol in ["aplusb.cpp", "aplusb.py"] {
        let out = judge_bin()
            .args([
                "test",
                &format!("problems/aplusb/submissions/accepted/{sol}"),
                "--problem",
                "problems/aplusb",
            ])
            .args(["--sandbox", "process", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{sol}: {v}");
        assert_eq!(v["verdict"], "AC");
    }
}

/// `judge test … | head -1`, `judge problem verify … | head -1`, `judge doctor | head -1`: a stdout closed by
/// the reader must not panic (exit 101); the verdict's exit code stays.
#[test]
fn closed_stdout_keeps_the_exit_code_of_judge_test_and_verify() {
    let Some(_sb) = sandbox() else {
        return;
    };
    // Runs `judge ARGS` with its stdout a pipe whose reader is already gone.
    let assert_exit = |args: &[&std::ffi::OsStr], code: i32| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = judge_bin()
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    assert_exit(
        &[
            os("test"),
            os("problems/aplusb/submissions/wrong_answer/int32.cpp"),
            os("--problem"),
            os("problems/aplusb"),
        ],
        10,
    );
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("closed");
    assert_exit(&[os("problem"), os("new"), dir.as_os_str()], 0);
    assert_exit(&[os("problem"), os("verify"), dir.as_os_str()], 0);
    // `judge doctor | head -1`: the same exit code as with an open stdout.
    let doctor = judge_bin().arg("doctor").output().unwrap().status.code();
    assert_exit(&[os("doctor")], doctor.unwrap());
}
