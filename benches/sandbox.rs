//! `cargo bench --bench sandbox`: the native sandbox against bare fork+exec (see `judge bench sandbox`).

fn main() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_judge"))
        .args(["bench", "sandbox"])
        .status()
        .expect("run judge bench sandbox");
    std::process::exit(status.code().unwrap_or(1));
}
