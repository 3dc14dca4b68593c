//! The command line: clap definitions and dispatch. Every input is checked here, before any
//! VM starts; errors name the flag and say what would work.

pub mod compare;
pub mod doctor;
pub mod files;
pub mod history;
pub mod image;
pub mod limit;
pub mod matrix;
pub mod plan;
pub mod report;
pub mod run;
pub mod target;
pub mod upload;

use crate::accel::AccelChoice;
use crate::size::ByteSize;
use crate::profile::TargetMode;
use crate::upload::content::ContentKind;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "perfvm",
    version,
    about = "Measure how a server program behaves inside a real virtual machine",
    long_about = "perfvm boots a libvirt guest with a chosen RAM size, starts the target (an HTTP upload \
server) as a systemd unit via cloud-init, uploads a generated file while sampling the target's memory, \
and writes one JSON result per cell.\n\nFirst time on a machine: run scripts/setup.sh (as root), then \
`perfvm doctor`.",
    after_help = "Examples:\n  perfvm run --ram 512 --file-size 1G\n  perfvm run --ram 256 --file-size 300M --target-mode memory\n  perfvm run --ram 512 --file-size 256M --target dufs\n  perfvm image build\n  perfvm doctor"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Only errors and results: no phase lines or progress (warnings still show).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log: -v info, -vv debug, -vvv trace (PERFVM_LOG, a tracing filter, overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// The tracing filter the flags ask for.
    pub fn log_level(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "error",
            (_, 0) => "warn",
            (_, 1) => "info",
            (_, 2) => "debug",
            _ => "trace",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one cell: boot a guest, upload one file, write result.json.
    Run(RunArgs),
    /// Run every cell of RAM sizes × file sizes (× concurrency × repeats); resumable, parallel
    /// within the memory budget; writes matrix.csv, results.json, summary.txt and report.html.
    Matrix(MatrixArgs),
    /// The breaking point: search the smallest guest RAM at which the target passes a verified
    /// upload of a size, or the largest file it passes at a RAM; resumable like a matrix; writes
    /// limit.json with the answer and its evidence.
    Limit(limit::LimitArgs),
    /// Write report.html (charts, outcome grid, every cell's memory timeline) and report.md into
    /// a run directory (a matrix's, or a single cell's). A matrix writes them at its end too.
    Report {
        /// The run directory (results/<run-key> or results/<run-id>).
        run_dir: PathBuf,
        /// The history database, for trends across runs [default: perfvm.sqlite beside the
        /// run directory, or PERFVM_DB].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
    /// Pack a matrix run's inputs (definition, target profile, image recipe, cloud-init
    /// templates, perfvm version) and results into one .tar.zst; `perfvm matrix --from` runs
    /// its cells again elsewhere. Never holds secrets.
    Snapshot {
        /// The matrix run directory.
        run_dir: PathBuf,
        /// The archive to write.
        #[arg(short, long, value_name = "FILE.tar.zst")]
        output: PathBuf,
    },
    /// Compare runs cell by cell with the first: change of throughput and peak memory, with a
    /// verdict from a permutation test on the repetitions.
    #[command(after_help = "Examples:\n  perfvm compare results/matrix-1a2b3c4d5e6f results/matrix-1a2b3c4d5e6f.2\n  perfvm compare RUN_A RUN_B RUN_C --format html > compare.html   # B and C against A, charts overlaid\n  perfvm compare RUN_A RUN_B --format md\n  perfvm compare RUN_A RUN_B --fail-on-regression 10   # exit 1 on a significant regression over 10 %\n\nA run is a run directory or a run id from the history database (`perfvm history`). Cells that only some runs have are compared where they are and listed. The test is an exact two-sided permutation test on the passed repetitions (difference of means, p < 0.05); it needs at least 4 repetitions on each side (--repeat 4) to ever call a change significant.")]
    Compare(CompareArgs),
    /// The results history: runs, or one cell's trend across runs (throughput, peak memory).
    #[command(after_help = "Examples:\n  perfvm history\n  perfvm history --cell 512/1G --target perfvm-target\n  perfvm history --cell 512/1G --format csv > trend.csv\n\nEvery run and matrix records its cells in results/perfvm.sqlite (--db or PERFVM_DB move it).")]
    History(HistoryArgs),
    /// The history database: import run directories into it (to rebuild or fill it).
    #[command(subcommand)]
    Db(DbCommand),
    /// One upload with perfvm's uploader to a URL on loopback, outside any cell (to check a
    /// target, or compare with curl).
    Upload(UploadArgs),
    /// Files to upload with `perfvm run --file`, generated into test-files/ and reused.
    #[command(subcommand)]
    Files(FilesCommand),
    /// The servers perfvm can measure: list them, or check a profile file.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Build, list or remove guest base images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check that this host can run cells, and say how to fix what is missing.
    Doctor(DoctorArgs),
    /// Destroy perfvm domains and files left behind by perfvm processes that no longer run.
    Cleanup(ConnArgs),
    /// Matrix plans: write an example, or check one (`perfvm matrix --plan FILE` runs it).
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Print the JSON Schema of result.json (docs/result.schema.json is a copy).
    Schema,
    /// Print a shell completion script: `perfvm completions bash > /etc/bash_completion.d/perfvm`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// libvirt connection URI.
    #[arg(long, default_value = crate::hypervisor::conn::DEFAULT_URI, env = "PERFVM_CONNECT")]
    pub connect: String,
}

/// Which libvirt hosts run cells.
#[derive(Args, Debug, Clone)]
pub struct HostsArgs {
    /// libvirt connection URI. Give it several times to spread a matrix over hosts; another
    /// machine is reached as qemu+ssh://USER@HOST/system (docs/hosts.md).
    #[arg(long, value_name = "URI", default_value = crate::hypervisor::conn::DEFAULT_URI, env = "PERFVM_CONNECT")]
    pub connect: Vec<String>,
    /// A hosts.toml listing hosts ([[host]] with uri, and optionally name, memory_mib, jobs,
    /// pool_path) instead of --connect.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
}

impl HostsArgs {
    pub fn specs(&self) -> Result<Vec<crate::hosts::spec::HostSpec>, crate::error::InputError> {
        // Not a clap conflict: PERFVM_CONNECT in the environment must not make --hosts an error.
        let from_env = std::env::var("PERFVM_CONNECT").ok();
        let given = self.connect.iter().any(|u| u != crate::hypervisor::conn::DEFAULT_URI && Some(u) != from_env.as_ref());
        if self.hosts.is_some() && given {
            return Err(crate::error::InputError("--connect and --hosts: give the hosts one way (--hosts takes precedence over PERFVM_CONNECT)".into()));
        }
        let r = match &self.hosts {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| crate::error::InputError(format!("--hosts {}: {e}", p.display())))?;
                crate::hosts::spec::parse_file(&text, p)
            }
            None => crate::hosts::spec::from_uris(&self.connect).map_err(|e| format!("--connect {e}")),
        };
        r.map_err(crate::error::InputError)
    }
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Results directory to check for space and write access.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[command(flatten)]
    pub image: ImageArgs,
}

/// Bring your own image instead of perfvm's (docs/images.md).
#[derive(Args, Debug, Clone, Default)]
pub struct ImageArgs {
    /// Boot this disk image (qcow2 or raw) instead of perfvm's own: a root filesystem with
    /// --kernel/--initrd, or a whole bootable disk. It needs cloud-init and qemu-guest-agent
    /// (`perfvm doctor --image PATH` checks). Imported into the cache once, never modified.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Kernel for direct boot of a root-filesystem --image.
    #[arg(long, value_name = "PATH", requires = "image")]
    pub kernel: Option<PathBuf>,
    /// Initrd for direct boot, with --kernel.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line for direct boot [default: root=/dev/vda rw console=ttyS0].
    #[arg(long, value_name = "TEXT", requires = "kernel")]
    pub cmdline: Option<String>,
}

impl ImageArgs {
    pub fn source(&self) -> Option<crate::image::import::Source> {
        self.image.as_ref().map(|disk| crate::image::import::Source {
            disk: disk.clone(),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct UploadArgs {
    /// Where to PUT, e.g. http://127.0.0.1:40123/upload/x.bin
    #[arg(long)]
    pub url: String,
    #[arg(long, value_name = "SIZE", value_parser = parse_size, required_unless_present = "file")]
    pub file_size: Option<ByteSize>,
    #[arg(long, value_name = "PATH", conflicts_with_all = ["file_size", "kind", "seed"])]
    pub file: Option<PathBuf>,
    #[arg(long, value_name = "KIND", default_value = "random", value_parser = parse_kind)]
    pub kind: ContentKind,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub chunked: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum FilesCommand {
    /// Write generated files (with a .sha256 beside each); files already there with exactly the
    /// right bytes are kept.
    #[command(after_help = "Example:\n  perfvm files generate 100M,1G --kind text\n  perfvm run --ram 512 --file test-files/text-1G-s1.bin")]
    Generate {
        /// Sizes, comma-separated (units as in `perfvm run --help`).
        #[arg(value_name = "SIZE,...", value_delimiter = ',', value_parser = parse_size, required = true)]
        sizes: Vec<ByteSize>,
        /// random, zeros, text or compressible:RATIO.
        #[arg(long, default_value = "random", value_parser = parse_kind)]
        kind: ContentKind,
        /// Same seed, same bytes (and the same as `perfvm run --seed`).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "test-files")]
        dir: PathBuf,
    },
}

/// Where the history database is: `--db`, else `PERFVM_DB`, else `perfvm.sqlite` in the results dir.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// The history database [default: RESULTS_DIR/perfvm.sqlite, or PERFVM_DB].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The results directory whose perfvm.sqlite is the default database.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
}

impl DbArgs {
    pub fn path(&self) -> PathBuf {
        crate::history::db_path(self.db.as_deref(), &self.results_dir)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Listings: a table for people, JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Show one cell's trend across runs, as RAM/SIZE (e.g. 512/1G).
    #[arg(long, value_name = "RAM/SIZE")]
    pub cell: Option<String>,
    /// With --cell: uploads at once of the cell.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub concurrency: u32,
    /// With --cell: only this target's runs (default: every target, one line each); the
    /// reference target's modes are separate lines, and perfvm-target:memory picks one.
    #[arg(long, value_name = "NAME[:MODE]")]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Two or more runs (run directories or run ids in the history database); the first is
    /// the baseline every other run is compared with.
    #[arg(value_name = "RUN", num_args = 2.., required = true)]
    pub runs: Vec<String>,
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    pub format: CompareFormat,
    /// Exit 1 when a cell's throughput fell, or its peak memory rose, significantly by more
    /// than this many percent (for CI gates).
    #[arg(long, value_name = "PCT")]
    pub fail_on_regression: Option<f64>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareFormat {
    Table,
    Csv,
    Json,
    Md,
    Html,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Record run directories (a matrix's or a single cell's) in the database; safe to repeat.
    Import {
        #[arg(required = true, value_name = "RUN_DIR")]
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// The built-in reference target and the shipped profiles (targets/*.toml).
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Validate profile files: unknown keys, missing fields, bad templates are named precisely.
    #[command(after_help = "Example:\n  perfvm target check targets/dufs.toml my-server.toml\n\nThe format is in docs/targets.md.")]
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Write a commented example plan to FILE (never over an existing file), or to stdout.
    Init {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Check a plan as `perfvm matrix --plan FILE` would (keys, values, cells, this host's
    /// limits) and print its cells' count and estimate; exit 2 naming the key when it is wrong.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build the base image from vm-images/ (reused while the recipe is unchanged).
    Build {
        /// Rebuild even if an image for this recipe exists.
        #[arg(long)]
        force: bool,
    },
    /// List cached images (marking the one the current recipe uses), then the saved guests that
    /// `--boot saved` restores (one per image, RAM, vCPUs and perfvm build; slots for cells at once).
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Remove a cached image, or a saved guest (an id starting with `s`), by id.
    Remove { id: String },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Guest RAM in MiB (exactly what the guest gets).
    #[arg(long, value_name = "MiB")]
    pub ram: u64,
    /// Size of the uploaded file. K/M/G/T are binary like dd (1G = 1024^3 bytes, 1.5G allowed);
    /// KB/MB/GB/TB are decimal (1GB = 10^9); a bare number is bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, required_unless_present = "file")]
    pub file_size: Option<ByteSize>,
    /// Upload this file instead of generated bytes (its size and sha256 are taken from it; see
    /// `perfvm files generate` for reusable files in test-files/).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["file_size", "kind", "seed"])]
    pub file: Option<PathBuf>,
    /// Uploads of the file at once, each under its own name.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub concurrency: u32,
    #[command(flatten)]
    pub common: CellArgs,
    /// Leave the guest running after the cell and print how to reach it.
    #[arg(long)]
    pub keep_vm: bool,
    /// For debugging: let root log in over ssh with this public key, through a second port
    /// forward on 127.0.0.1 (recorded as ssh_port). Without it the guest has no ssh keys, no
    /// running sshd and no password logins. Pair with --keep-vm.
    #[arg(long, value_name = "PUBKEY_FILE")]
    pub ssh_key: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:\n  perfvm matrix --ram 256,512,1024,2048 --file-size 100M,500M,1G,2G,5G\n  perfvm matrix --ram 512 --file-size 1G --repeat 5 --jobs 1\n  perfvm matrix --ram 256,512 --file-size 100M,1G --only '512/*' --list\n  perfvm matrix --ram 1024 --file-size 64M --concurrency 1,4 --target-mode memory\n  perfvm matrix --ram 512,1024 --file-size 256M --target dufs --repeat 4 --label v0.47\n  perfvm matrix --ram 512 --file-size 256M --target-rsd 5 --max-repeats 8   # repeat until throughput is steady\n  perfvm matrix --from run.tar.zst   # the cells of a snapshot, again\n  perfvm matrix --plan plan.toml --repeat 3   # options from a plan (perfvm plan init), one overridden\n  perfvm matrix --ram 512,1024 --file-size 1G --hosts hosts.toml   # over several libvirt hosts (docs/hosts.md)\n\nThe same command again resumes the run (finished cells are kept); --fresh starts a new one.")]
pub struct MatrixArgs {
    /// Guest RAM sizes in MiB, comma-separated.
    #[arg(long, value_name = "MiB,...", value_delimiter = ',', required_unless_present_any = ["from", "plan"])]
    pub ram: Vec<u64>,
    /// File sizes, comma-separated (units as in `perfvm run --help`).
    #[arg(long, value_name = "SIZE,...", value_delimiter = ',', value_parser = parse_size, required_unless_present_any = ["from", "plan"])]
    pub file_size: Vec<ByteSize>,
    /// Read the matrix's options from a plan file (`perfvm plan init` writes an example);
    /// flags given here override it. The plan is saved in the run directory.
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
    pub plan: Option<PathBuf>,
    /// Run the cells of a snapshot (`perfvm snapshot`) again, here: its definition, target
    /// profile, image recipe and cloud-init templates; a new run in --results-dir.
    #[arg(long, value_name = "SNAPSHOT.tar.zst", conflicts_with_all = ["ram", "file_size", "concurrency", "repeat", "target_rsd", "min_repeats", "max_repeats", "target", "target_mode", "image"])]
    pub from: Option<PathBuf>,
    /// With --from: run the commands the snapshot brings for this host (its image recipe's,
    /// its profile's [host] prepare) when they are not this project's own. Without it, perfvm
    /// lists them and stops.
    #[arg(long, requires = "from")]
    pub trust: bool,
    /// Uploads at once, comma-separated: a third dimension (`--concurrency 1,4`); each upload
    /// sends the whole file under its own name.
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "1")]
    pub concurrency: Vec<u32>,
    /// Run each cell N times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// Repeat each cell until the relative standard deviation (stddev / mean) of its
    /// throughput is PCT or less: --min-repeats first, then one more at a time, at most
    /// --max-repeats. A repetition that fails ends the cell. results.json records why each
    /// cell stopped. Cells running side by side widen the spread: --jobs 1 is the steadiest.
    #[arg(long, value_name = "PCT", conflicts_with = "repeat")]
    pub target_rsd: Option<f64>,
    /// With --target-rsd: the repetitions every cell gets first [default: 3].
    #[arg(long, value_name = "N", requires = "target_rsd")]
    pub min_repeats: Option<u32>,
    /// With --target-rsd: the most repetitions a cell gets [default: 10].
    #[arg(long, value_name = "N", requires = "target_rsd")]
    pub max_repeats: Option<u32>,
    /// Run only cells matching RAM/SIZE patterns (`512/1G`, `512/*`, `*/1G`), comma-separated.
    #[arg(long, value_name = "RAM/SIZE,...")]
    pub only: Vec<String>,
    /// Skip cells matching RAM/SIZE patterns.
    #[arg(long, value_name = "RAM/SIZE,...")]
    pub skip: Vec<String>,
    /// Print the cells with how long each will take (a cost model from boot time, throughput
    /// and file size, corrected by past cells in the results directory), checked as a run would
    /// check them, and exit.
    #[arg(long)]
    pub list: bool,
    /// With --list: table or json.
    #[arg(long, value_enum, default_value_t = Format::Table, requires = "list")]
    pub format: Format,
    /// Start a new run even if one with the same definition exists.
    #[arg(long)]
    pub fresh: bool,
    /// Cells at once. Default: as many as the host memory budget holds (guest RAM + qemu
    /// overhead each), at most the number of cores.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Retries of a cell after an infrastructure failure (boot, agent). Target failures are
    /// results and never retried.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Start no new cell after the first failed one.
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Also write JUnit XML here for CI systems: a test case per cell, a failure's exit reason
    /// as its message. Rewritten after every cell, like the run's own files.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[command(flatten)]
    pub common: CellArgs,
}

/// Options shared by every way of running cells.
#[derive(Args, Debug, Clone)]
pub struct CellArgs {
    /// Per-cell timeout in seconds: boot, readiness and the upload must fit in it. Collection
    /// afterwards (in-guest sha256, logs) has its own bounded budget.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    /// Where results go: one directory per run.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Acceleration: auto picks kvm only where kvm_intel/kvm_amd is loaded and /dev/kvm is usable.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// The server to measure: perfvm-target (the built-in reference), a shipped profile's name
    /// (nginx-webdav, dufs, uploadserver; see `perfvm target list`), or a profile file's path.
    /// The reference target takes its mode after a colon (perfvm-target:memory). A matrix
    /// measures several side by side: --target perfvm-target:stream,dufs.
    #[arg(long, default_value = crate::profile::REFERENCE_NAME, value_name = "NAME|PATH", value_delimiter = ',')]
    pub target: Vec<String>,
    /// How the reference target stores uploads: stream (plain writes, like most servers: small
    /// anon memory, the file's page cache grows; the default), drop-cache (syncs and drops the
    /// file's cache every 8 MiB: everything stays small) or memory (buffers the whole body first,
    /// like many web apps).
    #[arg(long, value_enum)]
    pub target_mode: Option<TargetMode>,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Seed of the generated file: same seed and size, same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Memory sampling interval in milliseconds during the upload.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub sample_interval: u64,
    /// Sample memory only, not CPU, I/O and pressure (to measure what those cost).
    #[arg(long)]
    pub sample_memory_only: bool,
    /// Where the stored files' sha256 is computed: host (freeze the guest's filesystems and read
    /// the files from its disk here, at native speed) or guest (sha256sum in the guest: emulated
    /// under TCG, ~70 MB/s). host falls back to guest where it cannot work (a remote host, a file
    /// outside the ext4 filesystem of the guest's disk, no qemu-storage-daemon/debugfs/FUSE)
    /// and the result's verification says why.
    #[arg(long, value_enum, default_value_t = crate::results::model::Verify::Host, value_name = "WHERE")]
    pub verify: crate::results::model::Verify,
    /// How each cell's guest starts: cold (boot the image, configure it with cloud-init: ~30 s
    /// under TCG) or saved (restore a guest booted and saved once, then deliver the target
    /// through the guest agent: seconds). The first saved cell of each RAM size boots and saves
    /// the guest (`perfvm image list` shows the saved states). Same RAM, same measurements;
    /// this machine only (not with --hosts elsewhere), not with --ssh-key.
    #[arg(long, value_enum, default_value_t = crate::results::model::Boot::Cold, value_name = "HOW")]
    pub boot: crate::results::model::Boot,
    /// Content of the generated file: random (incompressible), zeros, text, or
    /// compressible:RATIO (e.g. compressible:2). Recorded as content_kind.
    #[arg(long, value_name = "KIND", default_value = "random", value_parser = parse_kind)]
    pub kind: ContentKind,
    /// Send the upload with chunked transfer encoding instead of a Content-Length header.
    #[arg(long)]
    pub chunked: bool,
    /// After the upload, fetch the file back through the target, verify its sha256 on the host,
    /// and report the download's throughput and memory as a phase of its own.
    #[arg(long)]
    pub download: bool,
    /// The history database [default: RESULTS_DIR/perfvm.sqlite, or PERFVM_DB].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// A label recorded with the run in the history (e.g. the target's git revision).
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// A shell command run on the host before each cell, with the cell's facts in PERFVM_CELL,
    /// PERFVM_RAM_MB, PERFVM_FILE_SIZE(_BYTES), PERFVM_CONCURRENCY, PERFVM_REPEAT,
    /// PERFVM_ATTEMPT, PERFVM_TARGET, PERFVM_DOMAIN, PERFVM_RUN_ID, PERFVM_CELL_DIR. Its output
    /// goes to hook-before-cell.log; a non-zero exit fails the cell (harness_error).
    #[arg(long, value_name = "CMD")]
    pub hook_before_cell: Option<String>,
    /// Likewise after each cell (after teardown), also with PERFVM_EXIT_REASON and PERFVM_RESULT.
    #[arg(long, value_name = "CMD")]
    pub hook_after_cell: Option<String>,
    #[command(flatten)]
    pub hosts: HostsArgs,
}

impl CellArgs {
    /// The options as the library takes them.
    pub fn options(&self) -> Result<crate::setup::Options, crate::error::InputError> {
        Ok(crate::setup::Options {
            cell: crate::setup::CellSettings {
                cpus: self.cpus,
                timeout_s: self.timeout,
                seed: self.seed,
                content: self.kind,
                transfer: if self.chunked { crate::upload::client::Transfer::Chunked } else { crate::upload::client::Transfer::ContentLength },
                download: self.download,
                sample_interval_ms: self.sample_interval,
                sample_memory_only: self.sample_memory_only,
                verify: self.verify,
                boot: self.boot,
                hook_before: self.hook_before_cell.clone(),
                hook_after: self.hook_after_cell.clone(),
            },
            accel: self.accel,
            targets: self.target.iter().map(|t| crate::setup::target::TargetArg::parse(t)).collect::<Result<_, _>>()?,
            target_mode: self.target_mode,
            image: self.image.source(),
            hosts: self.hosts.specs()?,
            results_dir: self.results_dir.clone(),
            db: self.db.clone(),
            label: self.label.clone(),
            inputs: None,
        })
    }
}

fn parse_kind(s: &str) -> Result<ContentKind, String> {
    ContentKind::parse(s)
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    ByteSize::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbosity_maps_to_the_log_level_and_completions_generate() {
        let lvl = |args: &[&str]| Cli::try_parse_from(args).unwrap().log_level();
        assert_eq!(lvl(&["perfvm", "doctor"]), "warn");
        assert_eq!(lvl(&["perfvm", "-q", "doctor"]), "error");
        assert_eq!(lvl(&["perfvm", "doctor", "-vv"]), "debug");
        assert!(Cli::try_parse_from(["perfvm", "-q", "-v", "doctor"]).is_err());
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "perfvm", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("perfvm") && text.contains("matrix") && text.contains("file-size"), "{shell}");
        }
    }

    #[test]
    fn run_defaults_and_bad_sizes() {
        let c = Cli::try_parse_from(["perfvm", "run", "--ram", "512", "--file-size", "1G"]).unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.ram, 512);
        assert_eq!(r.file_size.unwrap().bytes(), 1 << 30);
        assert_eq!(r.concurrency, 1);
        assert!(r.file.is_none() && !r.common.download && !r.common.chunked);
        assert_eq!(r.common.timeout, 600);
        assert_eq!(r.common.cpus, 2);
        assert_eq!(r.common.accel, AccelChoice::Auto);
        let e = Cli::try_parse_from(["perfvm", "run", "--ram", "512", "--file-size", "1X"]).unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
        let e = Cli::try_parse_from(["perfvm", "run", "--ram", "512", "--file-size", "0"]).unwrap_err();
        assert!(e.to_string().contains("zero"), "{e}");
        let e = Cli::try_parse_from(["perfvm", "run", "--ram", "-1", "--file-size", "1G"]).unwrap_err();
        assert!(e.kind() != clap::error::ErrorKind::DisplayHelp);
        let e = Cli::try_parse_from(["perfvm", "run", "--ram", "512", "--file-size", "1G", "--accel", "xen"]).unwrap_err();
        assert!(e.to_string().contains("xen"), "{e}");
        // Either a size or a file, never both; a file's bytes are its own, so no --kind/--seed.
        assert!(Cli::try_parse_from(["perfvm", "run", "--ram", "512"]).is_err());
        let c = Cli::try_parse_from(["perfvm", "run", "--ram", "512", "--file", "x.bin"]).unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.file.unwrap().to_str(), Some("x.bin"));
        for extra in [["--file-size", "1G"], ["--kind", "zeros"], ["--seed", "3"]] {
            let mut args = vec!["perfvm", "run", "--ram", "512", "--file", "x.bin"];
            args.extend(extra);
            let e = Cli::try_parse_from(&args).unwrap_err();
            assert!(e.to_string().contains("cannot be used with"), "{extra:?}: {e}");
        }
        let e = Cli::try_parse_from(["perfvm", "run", "--ram", "512", "--file-size", "1G", "--kind", "compressible:0"]).unwrap_err();
        assert!(e.to_string().contains("ratio"), "{e}");
    }
}
