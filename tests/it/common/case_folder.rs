//! A folder where names that differ only in case name one file, as on macOS and in
//! casefold folders on Linux: an NTFS image, mounted through FUSE by ntfs-3g's
//! `lowntfs-3g -o ignore_case` (Linux, as root, with ntfs-3g installed, which
//! `tests/support/install-ntfs-3g` does for `make test`). ext4's casefold would be
//! the closer match, but it needs a kernel built with Unicode tables, which many
//! are not; FUSE is everywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The image's size: the least that mkntfs makes quickly and chat's tests fill.
const IMAGE_BYTES: u64 = 16 << 20;

/// A mounted case-insensitive folder, unmounted when dropped.
pub struct CaseInsensitiveFolder {
    path: PathBuf,
}

impl CaseInsensitiveFolder {
    /// [`CaseInsensitiveFolder::mount`], or `None` once the reason it cannot be
    /// mounted here is printed: the test that wanted it is skipped.
    pub fn mount_or_skip(at: &Path) -> Option<CaseInsensitiveFolder> {
        match CaseInsensitiveFolder::mount(at) {
            Ok(folder) => Some(folder),
            Err(reason) => {
                println!("SKIPPED case-insensitive download folder: {reason}");
                None
            }
        }
    }

    /// Mounts one at `at` (created, and empty), its image beside it; or why not.
    pub fn mount(at: &Path) -> Result<CaseInsensitiveFolder, String> {
        if !cfg!(target_os = "linux") {
            return Err("ntfs-3g's FUSE mount is for Linux".into());
        }
        std::fs::create_dir_all(at).unwrap();
        let image = at.with_extension("ntfs");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(IMAGE_BYTES))
            .unwrap();
        run(Command::new("mkntfs").args(["-q", "-F", "-f"]).arg(&image))?;
        // `permissions` keeps the modes chat sets (its parts folder must be 0700).
        run(Command::new("lowntfs-3g")
            .args(["-o", "ignore_case,permissions"])
            .arg(&image)
            .arg(at))?;
        let folder = CaseInsensitiveFolder {
            path: at.to_owned(),
        };
        std::fs::write(at.join("Probe"), b"").unwrap();
        let ignores_case = at.join("PROBE").exists();
        std::fs::remove_file(at.join("Probe")).unwrap();
        if !ignores_case {
            return Err("the mounted NTFS image tells names apart by case".into());
        }
        Ok(folder)
    }
}

impl Drop for CaseInsensitiveFolder {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    match command.output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(err) => Err(format!(
            "no {program} ({err}); it comes with Debian's ntfs-3g"
        )),
    }
}
