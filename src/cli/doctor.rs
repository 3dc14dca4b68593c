//! `perfvm doctor`: prints the checks of `setup::doctor`, each failed one with its fix.

use super::DoctorArgs;
use anyhow::Result;

pub fn run(args: DoctorArgs) -> Result<i32> {
    let source = args.image.source();
    let checks = crate::setup::doctor::checks(&args.conn.connect, &args.results_dir, source.as_ref())?;
    let mut failed = 0;
    for c in &checks {
        println!("{} {}", if c.ok { "ok  " } else { "FAIL" }, c.what);
        if let Some(fix) = &c.fix {
            println!("       -> {fix}");
            failed += 1;
        }
    }
    if failed > 0 {
        println!("\n{failed} check(s) failed.");
        Ok(1)
    } else {
        println!("\nall checks passed.");
        Ok(0)
    }
}
