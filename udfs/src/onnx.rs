//! Sentiment from a small ONNX classifier (`eval/onnx/sentiment.onnx`), run with ONNX Runtime
//! through the `ort` crate. Compiled only with the `onnx` cargo feature.
//!
//! # Runtime library
//! `ort` is built with `load-dynamic`: nothing is downloaded or linked at build time, and the
//! ONNX Runtime shared library is opened at run time from the path in the environment variable
//! [`ORT_DYLIB_PATH`](ORT_DYLIB_PATH_VAR) (or from the path given to [`init_runtime`]). The
//! library of the `onnxruntime` Python wheel works (ONNX Runtime 1.17 or newer):
//! ```text
//! pip install onnxruntime==1.32.0
//! export ORT_DYLIB_PATH=$(python3 -c "import onnxruntime,glob,os;print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__),'capi','libonnxruntime.so*'))[0])")
//! ```
//! The library is loaded, and the ONNX Runtime environment created, once per process: the
//! first [`init_runtime`] or [`OnnxScorer::load`] wins, later calls reuse it.
//!
//! # Model contract
//! Input `text`: string tensor `[N, 1]`. Output `probabilities`: float32 `[N, 3]`, columns
//! negative, neutral, positive (also output `label`: int64 `[N]`, the argmax, unused here).
//! The graph lower-cases ASCII only (its `StringNormalizer` uses the "C" locale, present on every
//! system), so the scorer lower-cases with full Unicode rules ([`str::to_lowercase`]) first,
//! exactly as `eval/onnx/train.py` does before feeding ONNX Runtime.
//!
//! # Determinism
//! The classifier runs row by row inside the graph (a `Scan`), so a text gets bit-identical
//! probabilities whatever batch it is scored in, and batches are also cut into runs of at most
//! [`MAX_RUN_ROWS`] rows (the TF-IDF layer is dense: `rows x vocabulary` floats per run).
//! Bit-identity holds for one ONNX Runtime build on one kind of CPU (its kernels dispatch on the
//! instruction set); across versions or CPUs expect differences around 1e-7.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::{Label, Sentiment};

/// Environment variable holding the path of the ONNX Runtime shared library.
pub const ORT_DYLIB_PATH_VAR: &str = "ORT_DYLIB_PATH";

/// Name of the model's string input.
pub const INPUT: &str = "text";

/// Name of the model's probability output (`[N, 3]` float32).
pub const OUTPUT_PROBS: &str = "probabilities";

/// Order of the probability columns.
pub const CLASSES: [Label; 3] = [Label::Negative, Label::Neutral, Label::Positive];

/// Default largest number of texts sent to ONNX Runtime in one run; [`OnnxScorer::score_batch`]
/// cuts longer batches (the results do not depend on it; see [`OnnxScorer::set_max_run_rows`]).
pub const MAX_RUN_ROWS: usize = 64;

/// Errors of the ONNX scorer.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// `ORT_DYLIB_PATH` is unset or empty and the runtime was not initialised explicitly.
    #[error(
        "environment variable {ORT_DYLIB_PATH_VAR} is not set: point it at the ONNX Runtime \
         shared library (e.g. onnxruntime/capi/libonnxruntime.so.* of the onnxruntime wheel)"
    )]
    DylibPathUnset,
    /// The shared library could not be opened, or is not a usable ONNX Runtime.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    LoadRuntime {
        /// Library path tried.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The library loaded but the ONNX Runtime environment could not be created.
    #[error("cannot create the ONNX Runtime environment (library {path}): {message}")]
    Environment {
        /// Library path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The model file could not be loaded into a session.
    #[error("cannot load ONNX model {path}: {source}")]
    LoadModel {
        /// Model path.
        path: PathBuf,
        /// ONNX Runtime's error.
        #[source]
        source: ort::Error,
    },
    /// The model loaded but does not have the expected inputs/outputs.
    #[error("ONNX model {path} does not fit the scorer: {message}")]
    ModelContract {
        /// Model path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Building the input tensor failed.
    #[error("cannot build the input tensor for {rows} texts: {source}")]
    Input {
        /// Texts in the run.
        rows: usize,
        /// ONNX Runtime's error.
        #[source]
        source: ort::Error,
    },
    /// ONNX Runtime failed while running the model.
    #[error("inference failed on a run of {rows} texts: {source}")]
    Inference {
        /// Texts in the run.
        rows: usize,
        /// ONNX Runtime's error.
        #[source]
        source: ort::Error,
    },
    /// The model's output is missing or has an unexpected type or shape.
    #[error("unexpected model output `{name}` on a run of {rows} texts: {message}")]
    Output {
        /// Output name.
        name: &'static str,
        /// Texts in the run.
        rows: usize,
        /// What is wrong.
        message: String,
    },
}

/// Class probabilities of one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnnxSentiment {
    /// Probabilities in [`CLASSES`] order: negative, neutral, positive.
    pub probs: [f32; 3],
}

impl OnnxSentiment {
    /// Index of the most probable class in [`CLASSES`] (a tie goes to the lower index).
    #[must_use]
    pub fn class_index(&self) -> usize {
        let p = &self.probs;
        let mut best = 0;
        for i in 1..3 {
            if p[i] > p[best] {
                best = i;
            }
        }
        best
    }

    /// Most probable label.
    #[must_use]
    pub fn label(&self) -> Label {
        CLASSES[self.class_index()]
    }

    /// `p(positive) - p(negative)`, in [-1, 1].
    #[must_use]
    pub fn score(&self) -> f64 {
        (f64::from(self.probs[2]) - f64::from(self.probs[0])).clamp(-1.0, 1.0)
    }

    /// Probability of the most probable class, in [0, 1].
    #[must_use]
    pub fn confidence(&self) -> f64 {
        f64::from(self.probs[self.class_index()]).clamp(0.0, 1.0)
    }

    /// As vigie's [`Sentiment`]: score = `p_pos - p_neg`, label = argmax, confidence = max prob.
    #[must_use]
    pub fn to_sentiment(&self) -> Sentiment {
        Sentiment {
            score: self.score(),
            label: self.label(),
            confidence: self.confidence(),
        }
    }
}

impl From<OnnxSentiment> for Sentiment {
    fn from(s: OnnxSentiment) -> Self {
        s.to_sentiment()
    }
}

struct Runtime {
    env: Environment,
    dylib: PathBuf,
}

static RUNTIME: OnceLock<Result<Runtime, OnnxError>> = OnceLock::new();

fn runtime_from(dylib: PathBuf) -> Result<Runtime, OnnxError> {
    let builder = ort::init_from(&dylib).map_err(|e| OnnxError::LoadRuntime {
        path: dylib.clone(),
        message: e.to_string(),
    })?;
    let env = builder
        .with_name("vigie")
        .build()
        .map_err(|e| OnnxError::Environment {
            path: dylib.clone(),
            message: e.to_string(),
        })?;
    Ok(Runtime { env, dylib })
}

/// Copy of the (cached) initialisation error.
fn replay(e: &OnnxError) -> OnnxError {
    match e {
        OnnxError::LoadRuntime { path, message } => OnnxError::LoadRuntime {
            path: path.clone(),
            message: message.clone(),
        },
        OnnxError::Environment { path, message } => OnnxError::Environment {
            path: path.clone(),
            message: message.clone(),
        },
        other => OnnxError::Environment {
            path: PathBuf::new(),
            message: other.to_string(),
        },
    }
}

fn runtime(explicit: Option<&Path>) -> Result<&'static Runtime, OnnxError> {
    if let Some(init) = RUNTIME.get() {
        return init.as_ref().map_err(replay);
    }
    // An unset variable is not cached: a later `init_runtime` may still provide the path.
    let dylib = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os(ORT_DYLIB_PATH_VAR) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Err(OnnxError::DylibPathUnset),
        },
    };
    RUNTIME
        .get_or_init(|| runtime_from(dylib))
        .as_ref()
        .map_err(replay)
}

/// Loads ONNX Runtime from `dylib` and creates the process-wide environment, if not done yet
/// (by this or by [`OnnxScorer::load`], which reads [`ORT_DYLIB_PATH`](ORT_DYLIB_PATH_VAR)).
/// Returns the path of the library actually in use.
///
/// # Errors
/// [`OnnxError::LoadRuntime`] if the library cannot be opened or is older than ONNX Runtime
/// 1.17, [`OnnxError::Environment`] if the environment cannot be created. A failure is final
/// for the process: later calls return the same error.
pub fn init_runtime(dylib: &Path) -> Result<&'static Path, OnnxError> {
    runtime(Some(dylib)).map(|r| r.dylib.as_path())
}

/// A loaded sentiment model. Not shared between threads while scoring (`score_batch` takes
/// `&mut self`); give each worker its own scorer, or wrap it in a `Mutex`.
pub struct OnnxScorer {
    session: Session,
    model_path: PathBuf,
    max_run_rows: usize,
}

impl std::fmt::Debug for OnnxScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxScorer")
            .field("model_path", &self.model_path)
            .finish_non_exhaustive()
    }
}

impl OnnxScorer {
    /// Loads the model at `model_path`, with one intra-op thread (the pipeline parallelises
    /// across scorers). The ONNX Runtime library comes from
    /// [`ORT_DYLIB_PATH`](ORT_DYLIB_PATH_VAR) unless [`init_runtime`] was called first.
    ///
    /// # Errors
    /// [`OnnxError::DylibPathUnset`], [`OnnxError::LoadRuntime`] or [`OnnxError::Environment`]
    /// if ONNX Runtime is not available; [`OnnxError::LoadModel`] if the file is missing or not
    /// a valid model; [`OnnxError::ModelContract`] if its inputs/outputs are not the expected
    /// ones.
    pub fn load(model_path: &Path) -> Result<Self, OnnxError> {
        Self::load_with_threads(model_path, 1)
    }

    /// As [`OnnxScorer::load`], with `intra_threads` intra-op threads (0 = ONNX Runtime's
    /// default, one per core). Results do not depend on it.
    ///
    /// # Errors
    /// As [`OnnxScorer::load`].
    pub fn load_with_threads(model_path: &Path, intra_threads: usize) -> Result<Self, OnnxError> {
        let rt = runtime(None)?;
        let path = model_path.to_path_buf();
        let load_err = |source: ort::Error| OnnxError::LoadModel {
            path: path.clone(),
            source,
        };
        let mut builder = Session::builder(&rt.env).map_err(load_err)?;
        if intra_threads > 0 {
            builder = builder
                .with_intra_threads(intra_threads)
                .map_err(|e| load_err(e.into()))?;
        }
        let session = builder
            .with_inter_threads(1)
            .map_err(|e| load_err(e.into()))?
            .commit_from_file(model_path)
            .map_err(load_err)?;
        check_contract(&session, model_path)?;
        Ok(Self {
            session,
            model_path: path,
            max_run_rows: MAX_RUN_ROWS,
        })
    }

    /// Path of the loaded model.
    #[must_use]
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Sets the largest number of texts per ONNX Runtime run (default [`MAX_RUN_ROWS`]; at
    /// least 1). Memory per run grows as `rows x vocabulary`; results do not depend on it.
    pub fn set_max_run_rows(&mut self, rows: usize) {
        self.max_run_rows = rows.max(1);
    }

    /// Scores `texts`; one result per text, in order. An empty or token-less text gets the
    /// model's prior (its intercepts). NUL characters are read as spaces.
    ///
    /// # Errors
    /// [`OnnxError::Input`], [`OnnxError::Inference`] or [`OnnxError::Output`] if ONNX Runtime
    /// fails; results of the texts before the failing run are dropped.
    pub fn score_batch(&mut self, texts: &[&str]) -> Result<Vec<OnnxSentiment>, OnnxError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.max_run_rows) {
            self.run(chunk, &mut out)?;
        }
        Ok(out)
    }

    /// Scores one text.
    ///
    /// # Errors
    /// As [`OnnxScorer::score_batch`].
    pub fn score(&mut self, text: &str) -> Result<OnnxSentiment, OnnxError> {
        let mut out = Vec::with_capacity(1);
        self.run(&[text], &mut out)?;
        Ok(out[0])
    }

    fn run(&mut self, texts: &[&str], out: &mut Vec<OnnxSentiment>) -> Result<(), OnnxError> {
        let rows = texts.len();
        if rows == 0 {
            return Ok(());
        }
        let lowered: Vec<String> = texts.iter().map(|t| prepare(t)).collect();
        let input = Tensor::from_string_array(([rows, 1], lowered.as_slice()))
            .map_err(|source| OnnxError::Input { rows, source })?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT => input])
            .map_err(|source| OnnxError::Inference { rows, source })?;
        let bad = |message: String| OnnxError::Output {
            name: OUTPUT_PROBS,
            rows,
            message,
        };
        let value = outputs
            .get(OUTPUT_PROBS)
            .ok_or_else(|| bad("missing".into()))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(e.to_string()))?;
        if shape.len() != 2 || shape[1] != 3 || data.len() != rows * 3 {
            return Err(bad(format!("shape {shape:?}, expected [{rows}, 3]")));
        }
        out.extend(data.chunks_exact(3).map(|p| OnnxSentiment {
            probs: [p[0], p[1], p[2]],
        }));
        Ok(())
    }
}

/// What the graph is fed: Unicode lower case (the graph itself only lower-cases ASCII), with
/// NULs (which C strings cannot carry) turned into spaces.
fn prepare(text: &str) -> String {
    let lower = text.to_lowercase();
    if lower.contains('\0') {
        lower.replace('\0', " ")
    } else {
        lower
    }
}

fn check_contract(session: &Session, path: &Path) -> Result<(), OnnxError> {
    let bad = |message: String| OnnxError::ModelContract {
        path: path.to_path_buf(),
        message,
    };
    let inputs = session.inputs();
    match inputs {
        [i] if i.name() == INPUT
            && matches!(
                i.dtype(),
                ValueType::Tensor {
                    ty: TensorElementType::String,
                    ..
                }
            ) => {}
        _ => {
            let found: Vec<String> = inputs
                .iter()
                .map(|i| describe(i.name(), i.dtype()))
                .collect();
            return Err(bad(format!(
                "expected one string input `{INPUT}`, found [{}]",
                found.join(", ")
            )));
        }
    }
    let probs = session.outputs().iter().find(|o| o.name() == OUTPUT_PROBS);
    match probs.map(ort::value::Outlet::dtype) {
        Some(ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        }) if shape.len() == 2 && (shape[1] == 3 || shape[1] < 0) => Ok(()),
        Some(t) => Err(bad(format!(
            "output `{OUTPUT_PROBS}` is {}, expected float32 [N, 3]",
            describe(OUTPUT_PROBS, t)
        ))),
        None => Err(bad(format!("no output `{OUTPUT_PROBS}`"))),
    }
}

fn describe(name: &str, t: &ValueType) -> String {
    format!("{name}: {t:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(probs: [f32; 3]) -> OnnxSentiment {
        OnnxSentiment { probs }
    }

    #[test]
    fn helpers_follow_the_class_order() {
        let v = s([0.7, 0.2, 0.1]).to_sentiment();
        assert_eq!(v.label, Label::Negative);
        assert!((v.score - (0.1f64 - 0.7).clamp(-1.0, 1.0)).abs() < 1e-6);
        assert!((v.confidence - 0.7).abs() < 1e-6);
        assert_eq!(s([0.1, 0.8, 0.1]).label(), Label::Neutral);
        assert_eq!(s([0.1, 0.2, 0.7]).label(), Label::Positive);
        assert!(s([0.1, 0.2, 0.7]).score() > 0.59);
        // Ties go to the lower index.
        assert_eq!(s([0.4, 0.4, 0.2]).label(), Label::Negative);
        assert_eq!(s([0.2, 0.4, 0.4]).label(), Label::Neutral);
        assert!((Sentiment::from(s([0.0, 0.0, 1.0])).score - 1.0).abs() < 1e-12);
    }

    #[test]
    fn prepare_lowercases_unicode_and_drops_nul() {
        assert_eq!(prepare("ÉTÉ Génial\0OK 😍"), "été génial ok 😍");
    }

    /// The model: `VIGIE_ONNX_MODEL`, else eval/onnx/sentiment.onnx of this repository.
    fn model() -> PathBuf {
        std::env::var_os("VIGIE_ONNX_MODEL").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/onnx/sentiment.onnx"),
            PathBuf::from,
        )
    }

    /// A scorer of the repository's model. The feature's tests need the runtime library:
    /// an unset `ORT_DYLIB_PATH` fails them rather than skipping (scripts/test.sh sets it).
    fn scorer() -> OnnxScorer {
        assert!(
            std::env::var_os(ORT_DYLIB_PATH_VAR).is_some_and(|p| !p.is_empty()),
            "{ORT_DYLIB_PATH_VAR} is not set: point it at libonnxruntime \
             (export {ORT_DYLIB_PATH_VAR}=$(python3 eval/onnx/runtime_path.py))"
        );
        OnnxScorer::load(&model()).expect("load the ONNX model")
    }

    #[test]
    fn scores_real_model() {
        let mut sc = scorer();
        let got = sc
            .score_batch(&[
                "I love this, absolutely amazing 😍",
                "Worst service ever, terrible and rude",
                "",
            ])
            .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].label(), Label::Positive, "{got:?}");
        assert_eq!(got[1].label(), Label::Negative, "{got:?}");
        for g in &got {
            let sum: f32 = g.probs.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{g:?}");
        }
        // Case and NULs do not matter; no text at all is fine.
        assert_eq!(
            sc.score("TERRIBLE\0service").unwrap(),
            sc.score("terrible service").unwrap()
        );
        assert!(sc.score_batch(&[]).unwrap().is_empty());
    }

    #[test]
    fn batching_does_not_change_a_single_bit() {
        let mut sc = scorer();
        let base = [
            "great app 👍",
            "the update broke everything :(",
            "meeting moved to thursday",
            "très déçu, service nul",
            "j'adore !!!",
            "",
            "ok",
        ];
        let texts: Vec<String> = (0..150)
            .map(|i| format!("{} {i}", base[i % base.len()]))
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let alone: Vec<[u32; 3]> = texts
            .iter()
            .map(|t| sc.score(t).unwrap().probs.map(f32::to_bits))
            .collect();
        for rows in [7, MAX_RUN_ROWS, 1000] {
            sc.set_max_run_rows(rows);
            let batch: Vec<[u32; 3]> = sc
                .score_batch(&texts)
                .unwrap()
                .iter()
                .map(|s| s.probs.map(f32::to_bits))
                .collect();
            assert_eq!(batch, alone, "runs of {rows} rows");
        }
    }

    #[test]
    fn missing_model_is_a_load_error() {
        scorer(); // the runtime loads; only the model is missing below
        let err = OnnxScorer::load(Path::new("/nonexistent/sentiment.onnx")).unwrap_err();
        assert!(matches!(err, OnnxError::LoadModel { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/sentiment.onnx"),
            "{err}"
        );
    }
}
