//! Commands that need no server: `preset --list` says what each preset sets up without a
//! database, and touches none.

use crate::common::temp_dir;
use crate::harness::BIN;
use std::process::Command;

fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

#[test]
fn preset_list_describes_every_preset_and_writes_nothing() {
    let dir = temp_dir("preset-list");
    let listed = run_in(dir.path(), &["preset", "--list"]);
    assert!(listed.status.success(), "{listed:?}");
    let stdout = String::from_utf8(listed.stdout).expect("UTF-8");
    for line in [
        "points-store: program 3",
        "  Points for a friend's first residential purchase: points at the product's rate × GB to the referrer",
        "cloud-credit: program 1",
        "  Cloud credit for the newcomer: prepaid friend topped up 10.00: 10.00 credit to the referred friend on top-ups",
        "isp: program 2",
        "  ISP: 10.00 off each invoice while 4 referrals are active: 10.00 credit to the referrer on the referrer's own \
         paid invoice, while it has 4 active referrals, every time",
        "refer-a-friend: program 4",
        "  Refer-a-friend: 10 % of a friend's compute spend above 20.00, up to 300.00: 10.00 % in credit of the spend \
         above the threshold to the referrer on qualifying spend, products of compute, within 90 days of sign-up, once \
         qualifying spend reaches 20.00, every time, at most 300.00 per referral, held 30 days, expires 180 days after \
         it becomes available, spendable on compute only",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(line)), "{line:?} in:\n{stdout}");
    }
    let written: Vec<_> = std::fs::read_dir(dir.path()).expect("the directory").collect();
    assert!(written.is_empty(), "no database, no key file: {written:?}");

    // A preset to apply, or the list: one of the two.
    let neither = run_in(dir.path(), &["preset"]);
    assert!(!neither.status.success(), "{neither:?}");
    let both = run_in(dir.path(), &["preset", "cloud-credit", "--list"]);
    assert!(!both.status.success(), "{both:?}");
}
