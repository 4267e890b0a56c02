//! The real `credgate serve` as a child process, for tests that send it
//! signals: SIGKILLed if a test fails before stopping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running gateway process and the file its output goes to.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    /// `credgate serve --config <config>`, its log (`RUST_LOG=info`, stderr)
    /// in `log`.
    pub fn serve(config: &Path, log: PathBuf) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_credgate"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Process { child, log }
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send a signal (`-HUP`, `-TERM`, …) with `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "gateway exited with {status}:\n{}",
                    self.log()
                );
                return;
            }
            assert!(Instant::now() < deadline, "gateway did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
