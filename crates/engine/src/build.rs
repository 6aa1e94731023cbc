//! The engine's side of `skiff build`: RUN steps as real containers of the image so
//! far (its layers read-only plus a fresh upper dir that becomes the step's layer),
//! in their own namespaces and a cgroup that is emptied and removed afterwards.

use crate::Engine;
use skiff_image::{RunStep, StepError, StepRunner};
use skiff_runtime::cgroups::{Cgroup, Host, Resources};
use skiff_runtime::spec::{ContainerSpec, NsMode, Process, Rootfs, DEFAULT_CAPABILITIES};
use skiff_runtime::{sys, Stdio};
use std::io::Write;
use std::path::PathBuf;

/// Runs RUN steps for [`skiff_image::build`]. The caller must be single-threaded.
pub struct BuildRunner<'a> {
    pub engine: &'a Engine,
}

impl Engine {
    /// Overlay lower dirs (top first) as short paths relative to the layer store
    /// where possible, so deep images fit in one mount option.
    pub fn overlay_lowers(&self, bottom_first: &[PathBuf]) -> (Vec<PathBuf>, PathBuf) {
        let base = self.root.join("images").join("layers");
        let lowers = bottom_first
            .iter()
            .rev()
            .map(|l| {
                l.strip_prefix(&base)
                    .map(|r| r.to_path_buf())
                    .unwrap_or_else(|_| l.clone())
            })
            .collect();
        (lowers, base)
    }
}

impl StepRunner for BuildRunner<'_> {
    fn run(&self, step: &RunStep, out: &mut dyn Write) -> Result<(), StepError> {
        let scratch = step
            .upper_dir
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(std::env::temp_dir);
        let merged = scratch.join(format!("merged-{}", &step.id));
        let empty = scratch.join(format!("empty-{}", &step.id));
        for d in [&merged, &empty] {
            std::fs::create_dir_all(d)
                .map_err(|e| StepError::other(format!("creating {}: {e}", d.display())))?;
        }
        let (mut lower, base) = self.engine.overlay_lowers(&step.lower_dirs);
        if lower.is_empty() {
            lower.push(empty.clone());
        }
        let process = Process {
            args: step.argv.clone(),
            env: step.env.clone(),
            cwd: if step.workdir.is_empty() {
                "/".into()
            } else {
                step.workdir.clone()
            },
            user: step.user.clone(),
            capabilities: DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut spec = ContainerSpec::new(
            &step.id,
            Rootfs::Overlay {
                lower,
                lower_base: Some(base),
                upper: step.upper_dir.clone(),
                work: step.work_dir.clone(),
                target: merged.clone(),
            },
            process,
        );
        spec.hostname = Some(step.id.chars().take(12).collect());
        // RUN steps reach the network the way the host does (docker's --network=host
        // for builds); everything else is private.
        spec.namespaces.net = NsMode::Host;
        let result = run_step(&spec, out);
        let _ = std::fs::remove_dir_all(&merged);
        let _ = std::fs::remove_dir_all(&empty);
        result
    }
}

fn run_step(spec: &ContainerSpec, out: &mut dyn Write) -> Result<(), StepError> {
    let host = Host::detect().map_err(|e| StepError::other(e.to_string()))?;
    let cg = Cgroup::create(
        &host,
        "skiff",
        &format!("build-{}", spec.id),
        &Resources::default(),
    )
    .map_err(|e| StepError::other(e.to_string()))?;
    let (r, w) = sys::pipe().map_err(|e| StepError::other(format!("pipe: {e}")))?;
    let created = skiff_runtime::create(
        spec,
        Stdio {
            stdin: -1,
            stdout: w,
            stderr: w,
        },
    );
    sys::close(w);
    let result = (|| {
        let created = created.map_err(|e| StepError::other(e.to_string()))?;
        let pid = created.pid;
        if let Err(e) = cg.join(pid) {
            created.abort();
            return Err(StepError::other(e.to_string()));
        }
        match created.start() {
            Ok(_) => {}
            Err(skiff_runtime::Error::Exec(f)) => {
                return Err(StepError {
                    exit_code: Some(f.code),
                    message: f.message,
                })
            }
            Err(e) => return Err(StepError::other(e.to_string())),
        }
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let n = unsafe { libc::read(r, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                break;
            }
            let _ = out.write_all(&buf[..n as usize]);
        }
        let mut st = 0;
        // SAFETY: waitpid(2) writes one int, which `st` is.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        let code = if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st)
        } else {
            128 + libc::WTERMSIG(st)
        };
        if code != 0 {
            return Err(StepError::exit(code));
        }
        Ok(())
    })();
    sys::close(r);
    let _ = cg.kill_all();
    let _ = cg.remove();
    result
}
