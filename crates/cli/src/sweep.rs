//! `elab plan`, `sweep`, `resume`, `refine` and `status`: a sweep on this machine (or handed
//! to Slurm, see `slurm`).

use std::process::ExitCode;

use elab_job::{SpecError, SweepDir, exit};
use elab_sweep::{
    LocalSettings, RefineRound, RefineSection, Resumption, SweepConfig, cores, print_plan,
};

use crate::flags::{RefineArgs, SweepRunArgs};
use crate::slurm::{slurm_options, slurm_sweep};
use crate::train::log_to;

pub(crate) fn plan(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = SweepConfig::load(config)?;
    let slots = config.sweep.slots.unwrap_or_else(cores);
    let (pack, backend) = (config.sweep.pack, &config.sweep.backend);
    let plan = config.plan()?;
    print!("{}", print_plan(&plan, pack, slots, backend));
    if let Err(e) = config.check_snapshot_budget(&plan) {
        println!("`elab sweep` will refuse this plan: {e}");
    } else if elab_sweep::snapshot_bytes(&plan) > 0 {
        println!(
            "snapshots within [sweep] snapshot_budget_gb = {}",
            config.sweep.snapshot_budget_gb
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn sweep(
    config: SweepConfig,
    dir: SweepDir,
    args: &SweepRunArgs,
    allow_changed: bool,
) -> anyhow::Result<ExitCode> {
    let slurm = slurm_options(&config, &args.cluster)?;
    // Refused before anything is written (prepare checks again with refined sizes added).
    config.check_snapshot_budget(&config.plan()?)?;
    std::fs::create_dir_all(&dir.root)?;
    let Some(_lock) = elab_job::lease::lock_with_lease(&dir.lock(), &dir.lease())? else {
        anyhow::bail!(
            "{} is already being run by another `elab sweep`",
            dir.root.display()
        );
    };
    // Held: no other scheduler writes here, so a temporary file is a killed write's.
    elab_job::fsio::remove_temps(&dir.root)?;
    let (plan, r) = elab_sweep::prepare(&dir, &config, allow_changed)?;
    log_to(&dir.log(), false)?;
    print_resumption(&config, &plan, &r);
    let hint = format!(
        "elab sweep {}\nor\n  elab resume {}",
        config.path.display(),
        dir.root.display()
    );
    run_plan(&config, &dir, &plan, args, slurm, &hint)
}

fn print_resumption(config: &SweepConfig, plan: &elab_job::Plan, r: &Resumption) {
    note!(
        "sweep {}: {} jobs: {} done, {} to resume from checkpoint, {} new, {} failed before (rerun), {} diverged, {} orphaned (no longer in the config, kept)",
        config.sweep.name,
        plan.jobs.len(),
        r.done.len(),
        r.resume.len(),
        r.new.len(),
        r.failed_before.len(),
        r.diverged.len(),
        r.orphaned.len()
    );
}

/// Runs every unfinished job of `plan` with the chosen executor. `hint` is the command that
/// continues after an interrupt.
fn run_plan(
    config: &SweepConfig,
    dir: &SweepDir,
    plan: &elab_job::Plan,
    args: &SweepRunArgs,
    slurm: Option<elab_sweep::SlurmOptions>,
    hint: &str,
) -> anyhow::Result<ExitCode> {
    if let Some(options) = slurm {
        return slurm_sweep(config, dir, plan, args, options);
    }
    elab_sweep::refuse_if_queued_in_slurm(dir)?;
    let settings = LocalSettings {
        elab: std::env::current_exe()?,
        slots: args.slots.or(config.sweep.slots).unwrap_or_else(cores),
        max_retries: config.sweep.max_retries,
        pack: config.sweep.pack,
        backend: args
            .backend
            .clone()
            .unwrap_or_else(|| config.sweep.backend.clone()),
    };
    let report = elab_sweep::run_local(dir, plan, &settings)?;
    note!(
        "sweep {}: {} done, {} diverged, {} failed of {} jobs",
        config.sweep.name,
        report.done,
        report.diverged,
        report.failed,
        plan.jobs.len()
    );
    if report.interrupted {
        note!("interrupted; every job is safe on disk. Continue with:\n  {hint}");
        return Ok(ExitCode::from(exit::SWEEP_INTERRUPTED));
    }
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `elab refine sweeps/<name>`: rounds of (run what is unfinished, analyse, record the sizes
/// to add in refine.json) until no threshold asks for more, or a limit of `[refine]` is
/// reached. A round is recorded before its jobs run, so an interrupted round continues on the
/// next `elab refine` (or `elab resume`) like any interrupted sweep.
pub(crate) fn refine(
    sweep_dir: &std::path::Path,
    args: &SweepRunArgs,
    limits: &RefineArgs,
) -> anyhow::Result<ExitCode> {
    // A bad flag is bad whatever the config says: refuse it before reading anything.
    limits.applied_to(RefineSection::default())?;
    let dir = SweepDir::new(sweep_dir);
    if !dir.exists() {
        anyhow::bail!(
            "{} is not a sweep directory (no config.toml): run `elab sweep` first",
            dir.root.display()
        );
    }
    let config = SweepConfig::load(&dir.config())?;
    let settings = limits.applied_to(config.refine)?;
    if config.sizes.len() < 2 {
        return Err(SpecError::new(
            "sizes",
            "refinement interpolates shapes along the [[sizes]] ladder: it needs at least 2 sizes",
        )
        .in_file(&dir.config())
        .into());
    }
    if args.cluster.detach {
        return Err(SpecError::new(
            "--detach",
            "refine waits for each round's jobs before it analyses them; run it without --detach",
        )
        .into());
    }
    let slurm = slurm_options(&config, &args.cluster)?;
    let Some(_lock) = elab_job::lease::lock_with_lease(&dir.lock(), &dir.lease())? else {
        anyhow::bail!(
            "{} is already being run by another `elab sweep`",
            dir.root.display()
        );
    };
    log_to(&dir.log(), false)?;
    let hint = format!("elab refine {}", dir.root.display());
    loop {
        let (plan, r) = elab_sweep::prepare(&dir, &config, false)?;
        print_resumption(&config, &plan, &r);
        let code = run_plan(&config, &dir, &plan, args, slurm.clone(), &hint)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        let mut recorded = elab_sweep::read_refinements(&dir)?;
        let data = elab_results::load::SweepData::load(&dir.root)?;
        let proposal = elab_refine::propose(&data, &config, &settings, &recorded);
        println!(
            "refine {}: after {} round(s), thresholds of {} over {}:",
            config.sweep.name,
            recorded.rounds.len(),
            elab_refine::SCORE.label(),
            elab_refine::SCALE.name()
        );
        print!("{}", elab_refine::describe(&proposal.groups));
        for line in &proposal.skipped {
            println!("  skipped: {line}");
        }
        if recorded.rounds.len() >= settings.max_rounds {
            println!(
                "refine: max_rounds = {} reached; no sizes added",
                settings.max_rounds
            );
            break;
        }
        if proposal.sizes.is_empty() {
            println!(
                "refine: no sizes to add (every threshold is resolved to {} decades, has no point to add, or the job budget is spent)",
                settings.target_width_decades
            );
            break;
        }
        let round = RefineRound {
            round: recorded.rounds.len() + 1,
            created: elab_job::unix_now(),
            target_width_decades: settings.target_width_decades,
            sizes: proposal.sizes,
        };
        for s in &round.sizes {
            println!(
                "refine: round {} adds {} (n_layer {}, d_model {}, n_head {}, {} params, {} jobs) to {}: {}",
                round.round,
                s.size.name,
                s.size.n_layer,
                s.size.d_model,
                s.size.n_head,
                s.params,
                s.jobs.len(),
                s.group,
                s.reason
            );
        }
        recorded.rounds.push(round);
        elab_sweep::write_refinements(&dir, &recorded)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan of an existing sweep directory, or why there is none.
pub(crate) fn read_plan(dir: &SweepDir) -> anyhow::Result<elab_job::Plan> {
    dir.read_plan().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("{} is not a sweep directory ({e})", dir.root.display())
        }
        _ => anyhow::anyhow!("cannot read the plan of {}: {e}", dir.root.display()),
    })
}

pub(crate) fn status(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let dir = SweepDir::new(dir);
    let plan = read_plan(&dir)?;
    print!("{}", elab_sweep::status_table(&dir, &plan)?);
    if let Some(section) = elab_sweep::slurm_status(&dir, &plan) {
        print!("{section}");
    }
    Ok(ExitCode::SUCCESS)
}
