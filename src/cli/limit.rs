//! `perfvm limit`: parses, calls `limit::run`, prints the answer and what to do next.

use super::{CellArgs, parse_size};
use crate::error::InputError;
use crate::exit;
use crate::limit::evidence;
use crate::limit::run::{self as limit, DEFAULT_CONFIRM, Ended};
use crate::limit::spec::{Question, Range, Spec, parse_ram_range, parse_size_range};
use crate::matrix::scheduler::Stopped;
use crate::size::ByteSize;
use crate::size::fmt_secs;
use crate::ui::ConsoleReporter;
use anyhow::Result;
use clap::Args;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const AFTER_HELP: &str = "Examples:
  perfvm limit --file-size 1G                        # the least RAM for a 1G upload: 128..4096 MiB, to 16 MiB
  perfvm limit --file-size 128M --target-mode memory --ram-range 128..512 --resolution 8
  perfvm limit --ram 256 --target-mode memory        # the largest file at 256 MiB: 16M..8G, to 5 %
  perfvm limit --ram 512 --size-range 64M..2G --resolution 64M --target dufs
  perfvm limit --file-size 1G --list                 # the points and the first probe; nothing runs
  perfvm limit --file-size 1G --hosts hosts.toml --jobs 2   # two probes at once, over hosts

How it searches: bisection over the points of the range (both ends are points), each probe an
ordinary cell kept in results/limit-<key>/cells/. The point found is probed again until it has
passed --confirm times; a failure is never repeated (one makes a point fail, and can only make the
answer more cautious). A target that passes at the hardest end, or fails at the easiest, is told
so: the limit is then beyond the range.

The same command again resumes the search (finished probes are kept, never redone); --fresh starts
a new one; the same command with a larger --confirm adds only the probes it needs. limit.json holds
the answer and its evidence (the points either side of the limit, how each probe there ended, the
peak memory where it passed); summary.txt, report.html (the probes on the searched axis) and the
history have it too. docs/limit.md explains the choices.

Exit: 0 found, or passes everywhere in the range; 1 passes nowhere in the range; 2 bad input;
69 the probes could not run (hosts lost, or the guest never booted); 130 interrupted.";

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("question").required(true).args(["file_size", "ram"])), after_help = AFTER_HELP)]
pub struct LimitArgs {
    /// Search the smallest guest RAM (MiB) at which the target passes a verified upload of this
    /// size (units as in `perfvm run --help`).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub file_size: Option<ByteSize>,
    /// Search the largest file the target passes, verified, with this much guest RAM (MiB).
    #[arg(long, value_name = "MiB")]
    pub ram: Option<u64>,
    /// With --file-size: the guest RAM searched, in MiB, both ends included [default: 128..4096].
    #[arg(long, value_name = "MiB..MiB", value_parser = parse_ram_range, conflicts_with = "ram")]
    pub ram_range: Option<Range>,
    /// With --ram: the file sizes searched, both ends included [default: 16M..8G].
    #[arg(long, value_name = "SIZE..SIZE", value_parser = parse_size_range, conflicts_with = "file_size")]
    pub size_range: Option<Range>,
    /// How close the answer must be: the step between points, in MiB with --file-size or as a
    /// size with --ram, or a percentage of the value (5%) [default: 16 with --file-size, 5% with
    /// --ram].
    #[arg(long, value_name = "STEP|PCT%")]
    pub resolution: Option<String>,
    /// Probes of the limit's point that must all pass before it is the answer: a pass at the
    /// boundary can be luck (docs/limit.md has what was measured).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONFIRM)]
    pub confirm: u32,
    /// Uploads of the file at once in every probe.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub concurrency: u32,
    /// Print the points, the first probes and what a probe takes, checked as a search would
    /// check them, and exit.
    #[arg(long)]
    pub list: bool,
    /// Start a new search even if one with the same definition exists.
    #[arg(long)]
    pub fresh: bool,
    /// Probes at once: N > 1 probes N points that split the interval left, in one round. Default:
    /// what the memory budget holds, at most cores / --cpus (parallel guests slow each other and
    /// change what they measure: docs/parallel.md).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Retries of a probe after an infrastructure failure (boot, agent); the target's failures
    /// are results, never retried.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    #[command(flatten)]
    pub common: CellArgs,
}

pub async fn run(args: LimitArgs, cancel: CancellationToken) -> Result<i32> {
    let o = args.common.options()?;
    let question = match (args.file_size, args.ram) {
        (Some(file_size), _) => Question::Ram { file_size },
        (None, Some(ram_mib)) => Question::FileSize { ram_mib },
        (None, None) => return Err(InputError("give --file-size SIZE (to search the RAM) or --ram MiB (to search the file size)".into()).into()),
    };
    let spec = Spec::new(question, args.ram_range.or(args.size_range), args.resolution.as_deref(), args.concurrency).map_err(|e| InputError(e.to_string()))?;
    let l = limit::options(spec, args.confirm, args.fresh, args.jobs, args.retries)?;
    if args.list {
        let p = tokio::task::block_in_place(|| limit::plan(&o, &l))?;
        list(&p, &l);
        return Ok(exit::SUCCESS);
    }

    let done = limit::run(o, l, cancel, Arc::new(ConsoleReporter::new())).await?;
    print!("{}", evidence::summary_lines(&done.doc));
    if let Err(e) = &done.report {
        eprintln!("perfvm: report not written: {e}");
    }
    println!("results: {}", done.run_dir.display());
    println!("  limit.json, report.html, report.md, summary.txt, matrix.csv, results.json; per probe: cells/<cell>/a<attempt>/");
    let on_disk = format!("{} probe(s) finished and on disk in {}", done.probes_before + done.probes_now, done.run_dir.display());
    match &done.ended {
        Ended::Stopped(Stopped::HostsLost { during }) => anyhow::bail!(
            "{}{} during probe {during}. {on_disk}. Start libvirtd (scripts/setup.sh), run `perfvm cleanup` to remove guests left running, then the same command to resume.",
            crate::pipeline::LIBVIRT_LOST,
            if done.hosts > 1 { " on every host" } else { "" }
        ),
        Ended::Stopped(Stopped::NothingFits { cells }) => anyhow::bail!("the probes {} fit no host that is left. {on_disk}. Free memory or give more hosts, then the same command to resume.", cells.join(", ")),
        Ended::Stopped(Stopped::Failure { cell }) => anyhow::bail!("the search stopped after {cell}. {on_disk}; the same command resumes it."),
        Ended::Interrupted => eprintln!("perfvm: interrupted; {on_disk}. Resume with the same command (add --fresh to start over)."),
        Ended::Done => eprintln!(
            "perfvm: {} probe(s) now, {} before; {} this time",
            done.probes_now,
            done.probes_before,
            fmt_secs(done.wall_seconds)
        ),
    }
    Ok(done.exit_code())
}

/// `--list`: the plan, for people.
fn list(p: &limit::Plan, l: &limit::LimitOptions) {
    let g = &p.grid;
    let n = g.len();
    // The points in ascending value, the first and last few.
    let mut values: Vec<String> = (0..n).map(|i| g.label(i)).collect();
    if matches!(g.question, Question::FileSize { .. }) {
        values.reverse();
    }
    let shown = if n <= 8 { values.join(", ") } else { format!("{}, … {}", values[..3].join(", "), values[n - 3..].join(", ")) };
    println!("{}", p.question);
    println!("{n} points in {} every {}: {shown}", l.spec.range_label(), l.spec.resolution_label());
    let first: Vec<String> = p.first.iter().map(|(i, r)| format!("{} r{r}", g.label(*i))).collect();
    println!("first probe(s), {} at once: {}", p.jobs, first.join(", "));
    println!(
        "a clean boundary takes {} probe(s) with one job ({} to bisect, then {} more to reach --confirm {}); a noisy one takes more",
        p.clean_probes,
        p.clean_probes - (l.confirm - 1),
        l.confirm - 1,
        l.confirm
    );
    println!(
        "a probe takes ~{} at {} and ~{} at {} (the cost model, corrected by past cells in the results directory)",
        fmt_secs(p.seconds.0),
        g.label(0),
        fmt_secs(p.seconds.1),
        g.label(n - 1)
    );
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<super::LimitArgs, clap::Error> {
        let mut full = vec!["perfvm", "limit"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).map(|c| match c.command {
            Command::Limit(a) => a,
            _ => panic!("not limit"),
        })
    }

    #[test]
    fn one_question_and_its_own_range() {
        let a = parse(&["--file-size", "1G"]).unwrap();
        assert_eq!((a.file_size.unwrap().bytes(), a.ram, a.confirm, a.concurrency, a.retries), (1 << 30, None, super::DEFAULT_CONFIRM, 1, 1));
        let a = parse(&["--ram", "256", "--size-range", "16M..1G", "--resolution", "5%"]).unwrap();
        assert_eq!((a.ram, a.size_range.unwrap().high, a.resolution.as_deref()), (Some(256), 1 << 30, Some("5%")));
        let e = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(e(&[]).contains("--file-size <SIZE>|--ram <MiB>"), "{}", e(&[]));
        assert!(e(&["--file-size", "1G", "--ram", "256"]).contains("cannot be used with"));
        assert!(e(&["--ram", "256", "--ram-range", "128..512"]).contains("cannot be used with"));
        assert!(e(&["--file-size", "1G", "--size-range", "16M..1G"]).contains("cannot be used with"));
        assert!(e(&["--file-size", "1G", "--ram-range", "128-512"]).contains("LOW..HIGH"));
        assert!(e(&["--file-size", "1Q"]).contains("unknown unit"));
        assert!(e(&["--ram", "256", "--size-range", "16M..1Q"]).contains("unknown unit"));
    }
}
