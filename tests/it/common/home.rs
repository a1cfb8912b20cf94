//! One person's machine in a test: an identity folder of its own (with its
//! `known_peers`) and a working folder.

use std::path::PathBuf;
use std::process::Command;

use super::{BIN, Peer, World};

/// A person: identity folder, working folder, and the name of the identity.
pub struct Home {
    pub name: &'static str,
    pub certs: PathBuf,
    pub workdir: PathBuf,
}

impl Home {
    pub fn new(world: &World, name: &'static str) -> Home {
        let home = Home {
            name,
            certs: world.path().join(format!("{name}-config")),
            workdir: world.path().join(format!("{name}-home")),
        };
        std::fs::create_dir_all(&home.workdir).unwrap();
        home
    }

    /// Makes (or, with `force`, remakes) the identity; its fingerprint.
    pub fn make_identity(&self, force: bool) -> String {
        let mut command = Command::new(BIN);
        command.args(["certs", "--name", self.name, "--dir"]);
        command.arg(&self.certs);
        if force {
            command.arg("--force");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        stdout
            .trim()
            .strip_prefix("Fingerprint: ")
            .unwrap()
            .to_owned()
    }

    pub fn known_peers(&self) -> PathBuf {
        self.certs.join("known_peers")
    }

    pub fn start(&self, extra: &[&str]) -> Peer {
        Peer::start(&self.workdir, &self.args(extra))
    }

    /// Like [`Home::start`], with `env` added to the environment.
    pub fn start_with_env(&self, env: &[(&str, &str)], extra: &[&str]) -> Peer {
        Peer::start_with_env(env, &self.workdir, &self.args(extra))
    }

    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["--name", self.name, "--listen", "127.0.0.1:0"]
            .map(String::from)
            .into();
        args.extend(["--certs-dir".into(), self.certs.display().to_string()]);
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    }

    /// Runs `chat` with `extra`, expecting it to refuse its settings before it starts
    /// (exit status 2); what it said on standard error.
    pub fn refused_at_start(&self, extra: &[&str]) -> String {
        let output = Command::new(BIN)
            .args(self.args(extra))
            .current_dir(&self.workdir)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        String::from_utf8(output.stderr).unwrap()
    }

    pub fn tool(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--dir")
            .arg(&self.certs)
            .output()
            .unwrap()
    }
}
