//! `perfvm run`: one cell. Parses, calls `single::run`, prints the summary.

use super::RunArgs;
use crate::results::model::ExitReason;
use crate::single::SingleOptions;
use crate::ui;
use anyhow::Result;
use tokio_util::sync::CancellationToken;

pub async fn run(args: RunArgs, cancel: CancellationToken) -> Result<i32> {
    let o = args.common.options()?;
    let s = SingleOptions { ram: args.ram, file_size: args.file_size, file: args.file.clone(), concurrency: args.concurrency, keep_vm: args.keep_vm, ssh_key: args.ssh_key.clone() };
    let reporter = ui::ConsoleReporter::new();
    let ran = crate::single::run(&o, &s, &cancel, &reporter, &|m| eprintln!("perfvm: {m}")).await?;
    let r = &ran.result;
    println!("{}", ui::summary(r, &ran.run_dir));
    if args.keep_vm
        && !cancel.is_cancelled()
        && r.exit_reason != ExitReason::HarnessError
        && let (Some(port), Some(domain)) = (r.host_port, &r.domain)
    {
        println!(
            "The guest {domain} is still running. Target: http://127.0.0.1:{port}/{}\nStop it: virsh -c {} destroy {domain}; then `perfvm cleanup` removes its overlay and seed.",
            r.ssh_port.map(|p| format!("\nLog in: ssh -p {p} root@127.0.0.1")).unwrap_or_default(),
            ran.uri,
        );
    }
    if cancel.is_cancelled() {
        eprintln!("perfvm: interrupted; the guest was torn down and the partial result kept in {}", ran.run_dir.display());
    }
    Ok(crate::exit::for_cell(r, cancel.is_cancelled()))
}
