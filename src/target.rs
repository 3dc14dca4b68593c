//! The target: the server a cell measures. For now the reference upload server that ships with
//! perfvm (`src/bin/perfvm-target.rs`); described as data so the pipeline never special-cases it.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TargetMode {
    /// Write the body to disk as it arrives: constant memory.
    Stream,
    /// Buffer the whole body in memory before writing, like many web apps.
    Memory,
}

impl TargetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetMode::Stream => "stream",
            TargetMode::Memory => "memory",
        }
    }
}

/// A file copied from the host into the guest through the seed disk.
#[derive(Debug, Clone)]
pub struct DeliveredFile {
    pub host: PathBuf,
    /// File name inside the seed's `files/` directory.
    pub seed_name: String,
    pub guest: String,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    pub mode: TargetMode,
    /// systemd unit name, with `.service`.
    pub unit: String,
    pub guest_port: u16,
    pub health_path: String,
    pub exec_start: String,
    pub files: Vec<DeliveredFile>,
    upload_prefix: String,
    store_dir: String,
}

pub const REFERENCE_NAME: &str = "perfvm-target";

impl TargetSpec {
    pub fn reference(mode: TargetMode, binary: PathBuf) -> TargetSpec {
        let store_dir = "/var/lib/perfvm-target/files".to_string();
        TargetSpec {
            name: REFERENCE_NAME.into(),
            mode,
            unit: "perfvm-target.service".into(),
            guest_port: 8080,
            health_path: "/health".into(),
            exec_start: format!(
                "/usr/local/bin/perfvm-target --listen 0.0.0.0:8080 --dir {store_dir} --mode {}",
                mode.as_str()
            ),
            files: vec![DeliveredFile {
                host: binary,
                seed_name: "perfvm-target".into(),
                guest: "/usr/local/bin/perfvm-target".into(),
                mode: 0o755,
            }],
            upload_prefix: "/upload/".into(),
            store_dir,
        }
    }

    pub fn upload_path(&self, file_name: &str) -> String {
        format!("{}{file_name}", self.upload_prefix)
    }

    /// Where the file can be fetched back (`--download`).
    pub fn download_path(&self, file_name: &str) -> Option<String> {
        Some(format!("/files/{file_name}"))
    }

    /// Where the target stores an uploaded file inside the guest (for sha256 verification).
    pub fn stored_path(&self, file_name: &str) -> String {
        format!("{}/{file_name}", self.store_dir)
    }

    /// The unit's cgroup v2 directory inside the guest.
    pub fn cgroup_dir(&self) -> String {
        format!("/sys/fs/cgroup/system.slice/{}", self.unit)
    }

    /// The systemd unit. Restart=on-failure lets a crashed or OOM-killed target come back (and
    /// be counted); accounting makes memory.current/peak and friends exist for the unit.
    pub fn unit_file(&self) -> String {
        format!(
            "[Unit]\n\
             Description=perfvm target {name} ({mode})\n\
             After=network.target\n\
             \n\
             [Service]\n\
             ExecStart={exec}\n\
             Restart=on-failure\n\
             RestartSec=1\n\
             MemoryAccounting=yes\n\
             CPUAccounting=yes\n\
             IOAccounting=yes\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            name = self.name,
            mode = self.mode.as_str(),
            exec = self.exec_start,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_unit_runs_the_chosen_mode() {
        let t = TargetSpec::reference(TargetMode::Memory, "/x/perfvm-target".into());
        let unit = t.unit_file();
        assert!(unit.contains("--mode memory"));
        assert!(unit.contains("Restart=on-failure"));
        assert!(unit.contains("MemoryAccounting=yes"));
        assert_eq!(t.stored_path("f.bin"), "/var/lib/perfvm-target/files/f.bin");
        assert_eq!(t.upload_path("f.bin"), "/upload/f.bin");
        assert_eq!(t.cgroup_dir(), "/sys/fs/cgroup/system.slice/perfvm-target.service");
    }
}
