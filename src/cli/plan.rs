//! `perfvm matrix --plan plan.toml` and `perfvm plan init|check`: every matrix option from a file.
//!
//! A plan is the matrix's command line as TOML: each key is a long flag of `perfvm matrix` with
//! `_` for `-` (`file_size = ["100M", "1G"]` is `--file-size 100M --file-size 1G`). It becomes
//! those flags, added after the command line's own, for every key the command line did not give:
//! so flags override the plan, clap validates both the same way, and a matrix given by a plan is
//! the same run (the same definition and key) as the same matrix given by flags. The keys are
//! read from clap's definition of `perfvm matrix`, so they cannot drift from the flags.

use crate::error::InputError;
use clap::parser::ValueSource;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Flags of `perfvm matrix` that say what to do with a run rather than what the run is.
const NOT_IN_A_PLAN: [&str; 8] = ["plan", "list", "format", "fresh", "from", "trust", "help", "quiet"];
/// Keys whose value is a path: relative to the plan file's directory, not the working directory.
const PATH_KEYS: [&str; 8] = ["results_dir", "db", "junit", "image", "kernel", "initrd", "hosts", "ssh_key"];

/// What `perfvm plan init` writes: every common key, commented where the default is fine.
pub const EXAMPLE: &str = r#"# A perfvm plan: the options of `perfvm matrix`, as a file. Run it with
#   perfvm matrix --plan plan.toml
# Flags on the command line override the plan. The same matrix given by a plan or by flags is the
# same run (the same key: a second start resumes it). Keys are the long flags of
# `perfvm matrix --help` with `_` for `-`. Check a plan with `perfvm plan check plan.toml`.

# The grid: guest RAM (MiB) × file sizes (K/M/G binary, KB/MB/GB decimal) × uploads at once.
ram = [256, 512, 1024]
file_size = ["100M", "1G"]
# concurrency = [1, 4]

# The server: perfvm-target (built in), a shipped profile (`perfvm target list`), or a profile
# file (a path relative to this plan). Several are measured side by side, each cell per target;
# the reference target takes its mode after a colon (stream, drop-cache or memory).
targets = ["perfvm-target:stream"]
# targets = ["perfvm-target:stream", "perfvm-target:memory", "dufs", "nginx-webdav"]

# Repetitions: a fixed number, or until the throughput's spread is at most target_rsd %.
repeat = 1
# target_rsd = 5.0
# min_repeats = 3
# max_repeats = 8

# Each cell.
timeout = 600
cpus = 2
accel = "auto"
# kind = "random"          # random, zeros, text, compressible:RATIO
# seed = 1
# chunked = false
# download = false
# sample_interval = 100

# The run.
retries = 1
# jobs = 1                 # default: what the host's memory holds, at most one per core
# stop_on_failure = false
# label = "nightly"
# results_dir = "results"
# junit = "junit.xml"
# hosts = "hosts.toml"     # or connect = ["qemu:///system", "qemu+ssh://perfvm@other/system"]
# hook_before_cell = "echo starting $PERFVM_CELL"
"#;

/// A plan file, read.
pub struct Plan {
    pub path: PathBuf,
    pub text: String,
    table: toml::Table,
}

pub fn load(path: &Path) -> Result<Plan, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| InputError(format!("--plan {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| InputError(format!("plan {}: {}", path.display(), e.to_string().trim())))?;
    Ok(Plan { path: path.to_path_buf(), text, table })
}

/// The keys a plan may have: `perfvm matrix`'s long options, with whether each takes a value.
pub fn keys(matrix: &clap::Command) -> Vec<(String, bool)> {
    matrix
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_IN_A_PLAN.contains(&a.get_id().as_str()))
        .map(|a| (a.get_id().to_string(), a.get_action().takes_values()))
        .collect()
}

/// The plan's keys as flags, leaving out those `given` on the command line.
pub fn flags(plan: &Plan, keys: &[(String, bool)], given: &dyn Fn(&str) -> bool) -> Result<Vec<OsString>, InputError> {
    let dir = plan.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let bad = |key: &str, why: String| InputError(format!("plan {}: {key}: {why}", plan.path.display()));
    let mut out = Vec::new();
    for (key, value) in &plan.table {
        // `targets = [...]` reads better for a list; it is `--target`.
        let key = &if key == "targets" && !plan.table.contains_key("target") { "target".to_string() } else { key.clone() };
        let Some((_, takes_value)) = keys.iter().find(|(k, _)| k == key) else {
            return Err(bad(key, unknown(key, keys)));
        };
        if given(key) {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        if !takes_value {
            match value {
                toml::Value::Boolean(true) => out.push(flag.into()),
                toml::Value::Boolean(false) => {}
                v => return Err(bad(key, format!("is a switch: use true or false, not {v}"))),
            }
            continue;
        }
        let items: Vec<&toml::Value> = match value {
            toml::Value::Array(a) if a.is_empty() => return Err(bad(key, "is empty: give at least one value, or leave the key out".into())),
            toml::Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        for item in items {
            let text = match item {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                v => return Err(bad(key, format!("takes a string or a number (or a list of them), not {v}"))),
            };
            let text = if PATH_KEYS.contains(&key.as_str()) || (key == "target" && looks_like_path(&text)) { relative_to(dir, &text) } else { text };
            out.push(flag.clone().into());
            out.push(text.into());
        }
    }
    Ok(out)
}

fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.ends_with(".toml")
}

fn relative_to(dir: &Path, s: &str) -> String {
    if Path::new(s).is_absolute() { s.to_string() } else { dir.join(s).display().to_string() }
}

/// "unknown key; did you mean …?", from the closest known key.
fn unknown(key: &str, keys: &[(String, bool)]) -> String {
    let norm = key.replace('-', "_");
    let close = keys
        .iter()
        .map(|(k, _)| k)
        .min_by_key(|k| edit_distance(&norm, k))
        .filter(|k| edit_distance(&norm, k) <= 3.max(norm.len() / 3));
    match close {
        Some(k) => format!("not a plan key; did you mean {k}? (`perfvm plan init` shows them all)"),
        None => "not a plan key (`perfvm plan init` shows them all)".into(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + (ca != *cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The command line with the plan's flags added, when it is `perfvm matrix --plan FILE`; else
/// as it was (clap then reports whatever is wrong with it). A value the plan gives that clap
/// refuses is reported with the plan's key, not the flag it became.
pub fn with_plan(cmd: &clap::Command, args: Vec<OsString>) -> Result<Vec<OsString>, InputError> {
    let Ok(m) = cmd.clone().try_get_matches_from(&args) else { return Ok(args) };
    let Some(("matrix", sub)) = m.subcommand() else { return Ok(args) };
    let Some(path) = sub.get_one::<PathBuf>("plan") else { return Ok(args) };
    let plan = load(path)?;
    let matrix = cmd.find_subcommand("matrix").expect("perfvm has a matrix command");
    let keys = keys(matrix);
    let added = flags(&plan, &keys, &|id| sub.value_source(id) == Some(ValueSource::CommandLine))?;
    let mut full = args;
    full.extend(added);
    if let Err(e) = cmd.clone().try_get_matches_from(&full)
        && let Some(clap::error::ContextValue::String(arg)) = e.get(clap::error::ContextKind::InvalidArg)
    {
        let id = arg.trim_start_matches("--").split([' ', '=']).next().unwrap_or("").replace('-', "_");
        if plan.table.contains_key(&id) && sub.value_source(&id) != Some(ValueSource::CommandLine) {
            let rendered = e.render().to_string();
            let why = rendered.lines().next().unwrap_or("").trim_start_matches("error: ");
            return Err(InputError(format!("plan {}: {id}: {why}", plan.path.display())));
        }
    }
    Ok(full)
}

/// `perfvm plan init|check`.
pub fn run(c: super::PlanCommand) -> anyhow::Result<i32> {
    match c {
        super::PlanCommand::Init { file: None } => print!("{EXAMPLE}"),
        super::PlanCommand::Init { file: Some(f) } => {
            use std::io::Write;
            let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&f).map_err(|e| InputError(format!("{}: {e} (an existing plan is never overwritten)", f.display())))?;
            out.write_all(EXAMPLE.as_bytes())?;
            println!("wrote {}; run it with `perfvm matrix --plan {}`", f.display(), f.display());
        }
        super::PlanCommand::Check { file } => {
            use clap::{CommandFactory, FromArgMatches};
            let cmd = super::Cli::command();
            let args = with_plan(&cmd, vec!["perfvm".into(), "matrix".into(), "--plan".into(), file.clone().into()])?;
            let matches = cmd.try_get_matches_from(args).map_err(|e| InputError(format!("plan {}: {}", file.display(), e.render().to_string().lines().next().unwrap_or("").trim_start_matches("error: "))))?;
            let super::Command::Matrix(m) = super::Cli::from_arg_matches(&matches)?.command else { unreachable!("built as a matrix command") };
            let (o, m) = options(&m)?;
            let e = crate::matrix::run::list(&o, &m)?;
            println!(
                "{}: ok: {} cell(s), ~{} at {} job(s) (cost model{})",
                file.display(),
                e.cells.len(),
                crate::size::fmt_secs(e.wall_seconds),
                e.jobs,
                if e.past > 0 { format!(", corrected by {} past cell(s)", e.past) } else { String::new() }
            );
        }
    }
    Ok(crate::exit::SUCCESS)
}

/// The library's options from `perfvm matrix`'s arguments, a plan's flags already in them (here,
/// beside the plan's loading, so that `plan check` and `matrix` share it without a cycle).
pub fn options(args: &super::MatrixArgs) -> anyhow::Result<(crate::setup::Options, crate::matrix::run::MatrixOptions)> {
    let o = args.common.options()?;
    let adaptive = match args.target_rsd {
        Some(t) => Some(crate::plan::repeats::Adaptive::new(args.min_repeats, args.max_repeats, t).map_err(InputError)?),
        None => None,
    };
    let plan = match &args.plan {
        Some(p) => Some(load(p)?.text),
        None => None,
    };
    let m = crate::matrix::run::MatrixOptions {
        ram: args.ram.clone(),
        file_sizes: args.file_size.clone(),
        concurrency: args.concurrency.clone(),
        repeat: args.repeat,
        adaptive,
        only: args.only.clone(),
        skip: args.skip.clone(),
        fresh: args.fresh,
        jobs: args.jobs,
        retries: args.retries,
        stop_on_failure: args.stop_on_failure,
        junit: args.junit.clone(),
        plan,
    };
    Ok((o, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    fn plan(text: &str, path: &str) -> Plan {
        Plan { path: path.into(), text: text.into(), table: toml::from_str(text).unwrap() }
    }

    fn matrix_args(args: Vec<OsString>) -> crate::cli::MatrixArgs {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Matrix(m) => m,
            _ => unreachable!(),
        }
    }

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn a_plan_is_the_same_matrix_as_its_flags_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.toml");
        std::fs::write(&p, "ram = [512, 256]\nfile_size = [\"1G\", \"100M\"]\nrepeat = 3\ndownload = true\nchunked = false\nlabel = \"nightly\"\nonly = [\"512/*\"]\n").unwrap();
        let cmd = Cli::command();
        let via_plan = with_plan(&cmd, argv(&format!("perfvm matrix --plan {}", p.display()))).unwrap();
        let by_flags = argv("perfvm matrix --ram 512,256 --file-size 1G,100M --repeat 3 --download --label nightly --only 512/*");
        let (a, b) = (matrix_args(via_plan), matrix_args(by_flags));
        assert_eq!((&a.ram, &a.file_size, a.repeat, a.common.download, a.common.chunked, &a.common.label, &a.only), (&b.ram, &b.file_size, b.repeat, b.common.download, b.common.chunked, &b.common.label, &b.only));
        assert_eq!(format!("{:?}", a.common.options().unwrap()), format!("{:?}", b.common.options().unwrap()), "the same options, so the same run key");

        // The command line wins, key by key; the rest still comes from the plan.
        let over = with_plan(&cmd, argv(&format!("perfvm matrix --plan {} --repeat 5 --ram 1024", p.display()))).unwrap();
        let m = matrix_args(over);
        assert_eq!((m.repeat, m.ram.clone(), m.file_size.len()), (5, vec![1024], 2));
        // PERFVM_CONNECT-style environment values do not count as given: only the command line.
        assert!(keys(cmd.find_subcommand("matrix").unwrap()).iter().any(|(k, v)| k == "connect" && *v));
    }

    #[test]
    fn paths_in_a_plan_are_relative_to_the_plan() {
        let p = plan("results_dir = \"out\"\ntarget = \"profiles/x.toml\"\nhosts = \"/etc/perfvm/hosts.toml\"\nram = [1]\n", "/srv/plans/plan.toml");
        let keys = keys(Cli::command().find_subcommand("matrix").unwrap());
        let f: Vec<String> = flags(&p, &keys, &|_| false).unwrap().iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let joined = f.join(" ");
        assert!(joined.contains("--results-dir /srv/plans/out") && joined.contains("--target /srv/plans/profiles/x.toml") && joined.contains("--hosts /etc/perfvm/hosts.toml"), "{joined}");
        let named = plan("target = \"dufs\"\n", "/srv/plans/plan.toml");
        assert_eq!(flags(&named, &keys, &|_| false).unwrap(), argv("--target dufs"), "a target's name is not a path");
        let several = plan("targets = [\"perfvm-target:memory\", \"dufs\"]\n", "/srv/plans/plan.toml");
        assert_eq!(flags(&several, &keys, &|_| false).unwrap(), argv("--target perfvm-target:memory --target dufs"), "targets is --target");
        let m = matrix_args([argv("perfvm matrix --ram 1 --file-size 1M"), flags(&several, &keys, &|_| false).unwrap()].concat());
        let by_flags = matrix_args(argv("perfvm matrix --ram 1 --file-size 1M --target perfvm-target:memory,dufs"));
        assert_eq!(format!("{:?}", m.common.options().unwrap().targets), format!("{:?}", by_flags.common.options().unwrap().targets));
    }

    #[test]
    fn bad_plans_name_the_key_and_the_fix() {
        let keys = keys(Cli::command().find_subcommand("matrix").unwrap());
        let err = |text: &str| flags(&plan(text, "p.toml"), &keys, &|_| false).unwrap_err().0;
        assert!(err("rams = [1]").contains("rams: not a plan key; did you mean ram?"), "{}", err("rams = [1]"));
        assert!(err("file-size = [\"1G\"]").contains("did you mean file_size?"));
        assert!(err("fresh = true").contains("not a plan key"), "what to do with a run is not part of it");
        assert!(err("download = 1").contains("download: is a switch: use true or false"));
        assert!(err("ram = []").contains("ram: is empty"));
        assert!(err("ram = [{a = 1}]").contains("ram: takes a string or a number"));
        let cmd = Cli::command();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.toml");
        for (text, want) in [("ram = [\"lots\"]\nfile_size = [\"1G\"]", "ram: invalid value 'lots'"), ("ram = [1]\nfile_size = [\"1Q\"]", "file_size: invalid value '1Q'"), ("ram = [1]\nfile_size = [\"1G\"]\naccel = \"xen\"", "accel: invalid value 'xen'")] {
            std::fs::write(&p, text).unwrap();
            let e = with_plan(&cmd, argv(&format!("perfvm matrix --plan {}", p.display()))).unwrap_err().0;
            assert!(e.contains(want) && e.contains("plan.toml"), "{text}: {e}");
        }
        std::fs::write(&p, "ram = [1").unwrap();
        assert!(with_plan(&cmd, argv(&format!("perfvm matrix --plan {}", p.display()))).unwrap_err().0.contains("plan.toml"));
        let missing = with_plan(&cmd, argv("perfvm matrix --plan /nonexistent/plan.toml")).unwrap_err().0;
        assert!(missing.contains("--plan /nonexistent/plan.toml"), "{missing}");
    }

    #[test]
    fn the_example_plan_is_a_valid_plan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.toml");
        std::fs::write(&p, EXAMPLE).unwrap();
        let full = with_plan(&Cli::command(), argv(&format!("perfvm matrix --plan {}", p.display()))).unwrap();
        let m = matrix_args(full);
        assert_eq!((m.ram, m.file_size.len(), m.common.timeout), (vec![256, 512, 1024], 2, 600));
        // Every key the example names, commented or not, is a key.
        let keys = keys(Cli::command().find_subcommand("matrix").unwrap());
        for line in EXAMPLE.lines() {
            let l = line.trim_start_matches("# ");
            if let Some((k, _)) = l.split_once(" = ")
                && !k.contains(' ')
            {
                assert!(k == "targets" || keys.iter().any(|(key, _)| key == k), "{k}");
            }
        }
    }
}
