//! The OpenSSH contenders: a private sshd on loopback (installed by
//! `benches/support/install-sshd` where it can be), and scp, `scp -r`, `tar | ssh`
//! and `rsync -a` over ssh against it. None of them syncs what it writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, run};

/// The cipher OpenSSH benchmarks fastest with where AES instructions exist.
pub const AES128_GCM: &str = "aes128-gcm@openssh.com";

/// A private sshd on loopback, with a key of its own for us.
pub struct Sshd {
    daemon: Child,
    port: u16,
    key: PathBuf,
    user: String,
}

impl Sshd {
    /// Starts the daemon, or says why not (then the caller skips the contenders).
    pub fn start(scratch: &Path) -> Result<Sshd, String> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .ok_or(
                "sshd is not installed (openssh-server; installing it needs root and apt-get)",
            )?;
        let dir = scratch.join("ssh");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for file in ["host", "user"] {
            let _ = std::fs::remove_file(dir.join(file));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(file)));
        }
        std::fs::copy(dir.join("user.pub"), dir.join("authorized_keys"))
            .map_err(|e| e.to_string())?;
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nStrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n",
            dir.join("host").display(),
            dir.join("authorized_keys").display()
        );
        std::fs::write(dir.join("sshd_config"), config).map_err(|e| e.to_string())?;
        // sshd refuses to start without its privilege-separation folder.
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let daemon = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("the private sshd did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Sshd {
            daemon,
            port,
            key: dir.join("user"),
            user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        })
    }

    /// The options every client call shares, and `cipher` unless it is the default.
    fn options(&self, command: &mut Command, port_flag: &str, cipher: Option<&str>) {
        command
            .args([
                "-q",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                port_flag,
            ])
            .arg(self.port.to_string())
            .arg("-i")
            .arg(&self.key);
        if let Some(cipher) = cipher {
            command.args(["-c", cipher]);
        }
    }

    fn remote(&self, path: &Path) -> String {
        format!("{}@127.0.0.1:{}", self.user, path.display())
    }

    /// Seconds `scp` takes to copy `source` (with `-r` for a folder) to `target`.
    pub fn scp(&self, source: &Path, target: &Path, cipher: Option<&str>) -> f64 {
        let start = Instant::now();
        let mut command = Command::new("scp");
        self.options(&mut command, "-P", cipher);
        if source.is_dir() {
            command.arg("-r");
        }
        run(command.arg(source).arg(self.remote(target)));
        start.elapsed().as_secs_f64()
    }

    /// Seconds `tar -c | ssh tar -x` takes to copy the folder `source` into `into`.
    pub fn tar_over_ssh(&self, source: &Path, into: &Path) -> f64 {
        let start = Instant::now();
        std::fs::create_dir_all(into).unwrap();
        let ssh = self.ssh_command(&[
            format!("{}@127.0.0.1", self.user),
            format!("tar -x -C '{}'", into.display()),
        ]);
        let parent = source.parent().unwrap();
        let name = source.file_name().unwrap().to_string_lossy();
        let pipeline = format!("tar -c -C '{}' '{name}' | {ssh}", parent.display());
        run(Command::new("sh").args(["-c", &pipeline]));
        start.elapsed().as_secs_f64()
    }

    /// Seconds `rsync -a` over ssh takes to copy the folder `source` to `target`,
    /// which it creates.
    pub fn rsync(&self, source: &Path, target: &Path) -> f64 {
        let start = Instant::now();
        let mut source = source.as_os_str().to_owned();
        source.push("/");
        run(Command::new("rsync")
            .args(["-a", "-e", &self.ssh_command(&[])])
            .arg(source)
            .arg(format!("{}/", self.remote(target))));
        start.elapsed().as_secs_f64()
    }

    /// `ssh` with the options every call shares and then `words`, quoted for `sh`.
    fn ssh_command(&self, words: &[String]) -> String {
        let mut ssh = Command::new("ssh");
        self.options(&mut ssh, "-p", None);
        let ssh: Vec<String> = std::iter::once("ssh".to_owned())
            .chain(ssh.get_args().map(|arg| arg.to_string_lossy().into_owned()))
            .chain(words.iter().cloned())
            .map(|word| format!("'{}'", word.replace('\'', "'\\''")))
            .collect();
        ssh.join(" ")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
