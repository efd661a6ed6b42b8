//! A stand-in for Arroyo's UDF host, enough to call vigie's plugins exactly as a worker does.
//!
//! Arroyo (`arroyo-udf-host`, `UdfDylibInterface`) `dlopen`s the plugin and calls the one
//! symbol a sync `#[udf]` exports:
//!
//! ```text
//! #[no_mangle]
//! pub extern "C-unwind" fn __run(args: FfiArrays) -> RunResult
//! ```
//!
//! `FfiArrays` is a `#[repr(C)]` leaked `Vec<FfiArraySchema>` (one Arrow C Data Interface
//! array + schema per argument, all of the batch's length) that the plugin takes ownership
//! of; `RunResult` is `Ok(FfiArraySchema)` (the result column) or `Err` (the UDF panicked).
//! Both types come from `arroyo-udf-common`, as on the host side, and `arrow` is the plugins'
//! version, so the structs match.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use arrow::array::{make_array, Array, ArrayData, ArrayRef, Float64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::ffi::from_ffi;
use arroyo_udf_common::{FfiArraySchema, FfiArrays, RunResult};
use libloading::Library;

/// The type of the `__run` symbol of a sync Arroyo UDF plugin.
pub type RunFn = unsafe extern "C-unwind" fn(FfiArrays) -> RunResult;

/// Where the plugins are: `$VIGIE_ARROYO_PLUGIN_DIR`, else the profile directory this test
/// binary was built into (`target/<profile>/deps/<test>` → `target/<profile>`), which is where
/// `cargo build --workspace` of the same profile puts the cdylibs.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VIGIE_ARROYO_PLUGIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_path_buf()
}

/// File name of a plugin crate's cdylib, e.g. `libvigie_udf_language.so` on Linux.
pub fn plugin_file_name(crate_name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// A loaded plugin.
pub struct Plugin {
    lib: Library,
    path: PathBuf,
}

impl Plugin {
    /// `dlopen`s the cdylib of the plugin crate `crate_name` from [`plugin_dir`].
    pub fn load(crate_name: &str) -> Result<Plugin, String> {
        let path = plugin_dir().join(plugin_file_name(crate_name));
        if !path.exists() {
            return Err(format!(
                "{} is not built: run `cargo build --workspace` in udfs/arroyo before \
                 `cargo test` (udfs/arroyo/test.sh does both)",
                path.display()
            ));
        }
        check_fresh(&path)?;
        // SAFETY: the plugin's initialisers are those of a Rust cdylib (no custom ones).
        let lib = unsafe { Library::new(path.as_os_str()) }
            .map_err(|e| format!("dlopen {}: {e}", path.display()))?;
        Ok(Plugin { lib, path })
    }

    /// The file loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the library exports `symbol`.
    pub fn exports(&self, symbol: &str) -> bool {
        // SAFETY: only looked up, never called through this type.
        unsafe {
            self.lib
                .get::<*const ()>(OsStr::new(symbol).as_encoded_bytes())
        }
        .is_ok()
    }

    /// Calls `__run` on one batch, the way `arroyo-udf-host` does: the arguments go out
    /// through `FfiArrays::from_vec` (the plugin frees them), the result comes back through
    /// `from_ffi`. Returns the result column, or an error if the UDF reported a panic.
    ///
    /// The result's buffers are released by code in the plugin: drop it before the plugin
    /// (the typed helpers below copy it out at once).
    pub fn run(&self, args: Vec<ArrayData>) -> Result<ArrayRef, String> {
        // SAFETY: `__run` has this signature in every arroyo-udf-plugin 0.2 sync UDF.
        let run = unsafe { self.lib.get::<RunFn>(b"__run") }
            .map_err(|e| format!("{}: no __run: {e}", self.path.display()))?;
        // SAFETY: the arrays are valid Arrow data of the argument types the caller chose.
        match unsafe { run(FfiArrays::from_vec(args)) } {
            RunResult::Ok(FfiArraySchema(array, schema)) => {
                // SAFETY: the plugin built this pair with arrow's `to_ffi`.
                let data = unsafe { from_ffi(array, &schema) }
                    .map_err(|e| format!("{}: bad result: {e}", self.path.display()))?;
                Ok(make_array(data))
            }
            RunResult::Err => Err(format!("{}: the UDF panicked", self.path.display())),
        }
    }

    /// [`Plugin::run`] for a UDF returning `DOUBLE`, copied out.
    pub fn run_f64(&self, args: Vec<ArrayData>) -> Result<Vec<Option<f64>>, String> {
        let out = self.run(args)?;
        if out.data_type() != &DataType::Float64 {
            return Err(format!("expected Float64, got {}", out.data_type()));
        }
        let out = out.as_any().downcast_ref::<Float64Array>().unwrap();
        Ok(out.iter().collect())
    }

    /// [`Plugin::run`] for a UDF returning `TEXT`, copied out.
    pub fn run_utf8(&self, args: Vec<ArrayData>) -> Result<Vec<Option<String>>, String> {
        let out = self.run(args)?;
        if out.data_type() != &DataType::Utf8 {
            return Err(format!("expected Utf8, got {}", out.data_type()));
        }
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        Ok(out.iter().map(|s| s.map(str::to_string)).collect())
    }
}

/// `cargo test` does not rebuild a cdylib nothing links to, so a plugin can be older than its
/// sources; say so rather than report a confusing mismatch. The sources are those cargo
/// itself watches: the dep-info file it writes beside the library (`<lib>.d`, make syntax),
/// which lists every file rustc and the build scripts read, vigie-udfs' included.
fn check_fresh(built: &Path) -> Result<(), String> {
    let Ok(dep_info) = std::fs::read_to_string(built.with_extension("d")) else {
        return Ok(()); // not built by cargo: nothing to compare with
    };
    let built_at = modified(built).ok_or_else(|| format!("no mtime for {}", built.display()))?;
    let newer = dep_info_sources(&dep_info)
        .into_iter()
        .filter(|source| modified(source).is_some_and(|at| at > built_at))
        .collect::<Vec<_>>();
    match newer.first() {
        None => Ok(()),
        Some(source) => Err(format!(
            "{} is older than {}: rebuild it with `cargo build --workspace` in udfs/arroyo \
             (udfs/arroyo/test.sh builds before it tests)",
            built.display(),
            source.display()
        )),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The prerequisites of a make-style dep-info file (`target: dep dep…`, `\ ` escaping a
/// space in a path).
fn dep_info_sources(dep_info: &str) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for line in dep_info.lines() {
        let Some(colon) = line.find(": ") else {
            continue;
        };
        let mut path = String::new();
        let mut chars = line[colon + 2..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => path.extend(chars.next()),
                ' ' => {
                    if !path.is_empty() {
                        sources.push(PathBuf::from(std::mem::take(&mut path)));
                    }
                }
                c => path.push(c),
            }
        }
        if !path.is_empty() {
            sources.push(PathBuf::from(path));
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_is_parsed() {
        let d = "/t/libx.so: /a/src/lib.rs /b/with\\ space.rs\n\n/t/other: /c.rs\n";
        assert_eq!(
            dep_info_sources(d),
            ["/a/src/lib.rs", "/b/with space.rs", "/c.rs"].map(PathBuf::from)
        );
    }

    #[test]
    fn plugin_file_names_follow_cargo() {
        assert_eq!(
            plugin_file_name("vigie-udf-language"),
            format!(
                "{}vigie_udf_language{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            )
        );
    }
}
