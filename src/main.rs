use clap::{CommandFactory, FromArgMatches};
use perfvm::cli::{self, Cli, Command};
use perfvm::exit;
use tokio_util::sync::CancellationToken;

fn main() {
    // The exit codes under the examples of `perfvm --help`, from the one table that defines them.
    let cmd = Cli::command();
    let after = format!("{}\n\n{}", cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default(), exit::help());
    // `perfvm matrix --plan FILE`: the plan's options become flags after the command line's own.
    let args = cli::plan::with_plan(&cmd, std::env::args_os().collect()).unwrap_or_else(|e| {
        eprintln!("error: {}", e.0);
        std::process::exit(exit::BAD_INPUT)
    });
    let cli = Cli::from_arg_matches(&cmd.after_help(after).get_matches_from(args)).unwrap_or_else(|e| e.exit());
    // Colour only for a person at a terminal, never with NO_COLOR.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PERFVM_LOG").unwrap_or_else(|_| cli.log_level().into()))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    perfvm::ui::set_quiet(cli.quiet);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = rt.block_on(dispatch(cli));
    // The runtime is dropped (and with it every guard) before the process exits.
    drop(rt);
    std::process::exit(code);
}

async fn dispatch(cli: Cli) -> i32 {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let res = match cli.command {
        Command::Run(a) => cli::run::run(a, cancel).await,
        Command::Matrix(a) => cli::matrix::run(a, cancel).await,
        Command::Limit(a) => cli::limit::run(a, cancel).await,
        Command::Report { run_dir, db } => tokio::task::block_in_place(|| cli::report::report(&run_dir, db.as_deref())),
        Command::Upload(a) => cli::upload::run(a).await,
        Command::Files(c) => tokio::task::block_in_place(|| cli::files::run(c)),
        Command::Snapshot { run_dir, output } => tokio::task::block_in_place(|| cli::report::snapshot(&run_dir, &output)),
        Command::Compare(a) => tokio::task::block_in_place(|| cli::compare::run(&a)),
        Command::History(a) => tokio::task::block_in_place(|| cli::history::history(&a)),
        Command::Db(cli::DbCommand::Import { dirs, db }) => tokio::task::block_in_place(|| cli::history::import(&dirs, &db)),
        Command::Target(cli::TargetCommand::List { format }) => cli::target::list(format),
        Command::Target(cli::TargetCommand::Check { files }) => cli::target::check(&files),
        Command::Image(c) => tokio::task::block_in_place(|| cli::image::run(c)),
        Command::Doctor(a) => tokio::task::block_in_place(|| cli::doctor::run(a)),
        Command::Cleanup(a) => tokio::task::block_in_place(|| cli::report::cleanup(&a.connect)),
        Command::Plan(c) => tokio::task::block_in_place(|| cli::plan::run(c)),
        Command::Schema => {
            print!("{}", perfvm::results::model::json_schema());
            Ok(exit::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "perfvm", &mut out);
            // A reader that stops early (`| head`) is not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
            Ok(exit::SUCCESS)
        }
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::for_error(&e)
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP cancel the running cells; they tear down and write what they have.
/// A second signal exits at once (what is left over is removed by the next perfvm, or
/// `perfvm cleanup`). SIGHUP is an ssh session to this host that dropped: the terminal is gone,
/// so perfvm's output goes to /dev/null from then on rather than fail (and panic) on write.
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            return;
        };
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            if name == "SIGHUP" {
                detach_output();
            }
            use std::io::Write;
            if cancel.is_cancelled() {
                let _ = writeln!(std::io::stderr(), "\nperfvm: second {name}: exiting now; run `perfvm cleanup` to remove what is left");
                std::process::exit(exit::INTERRUPTED);
            }
            let _ = writeln!(std::io::stderr(), "\nperfvm: {name} received: tearing down running cells (finished results are on disk; again to exit at once)");
            cancel.cancel();
        }
    });
}

/// Point stdout and stderr at /dev/null.
fn detach_output() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}
