//! The choice of sentiment scorer, and `vigie score`: lines from stdin scored as NDJSON,
//! in input order (evaluation scripts and other tools rely on this interface).

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;
use vigie_udfs::{ScoreConfig, Scorer, Scores};

use crate::cli::ScoreOpts;

/// Which sentiment scorer to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerChoice {
    /// The built-in lexicon scorer.
    Lexicon,
    /// An ONNX text classifier at this path.
    Onnx(PathBuf),
}

impl FromStr for ScorerChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lexicon" => Ok(ScorerChoice::Lexicon),
            _ => match s.strip_prefix("onnx:") {
                Some(path) if !path.is_empty() => Ok(ScorerChoice::Onnx(PathBuf::from(path))),
                _ => Err(format!(
                    "unknown scorer {s:?}: expected `lexicon` or `onnx:PATH`"
                )),
            },
        }
    }
}

/// One output line of `vigie score`.
#[derive(Debug, Serialize)]
pub struct ScoreLine<'a> {
    /// The input's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a serde_json::Value>,
    /// `en`, `fr` or `other`.
    pub lang: &'static str,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: &'static str,
    /// In [-1, 1].
    pub sentiment_score: f64,
    /// In [0, 1].
    pub confidence: f64,
    /// Present emotions, strongest first.
    pub emotions: Vec<&'static str>,
    /// Weight of each present emotion in [0, 1] (the strongest is 1).
    pub emotion_weights: serde_json::Map<String, serde_json::Value>,
    /// Why the line could not be scored (then it is scored as empty text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Text of one input line: the `text` field of a JSON object, or the line itself.
fn text_of(line: &str) -> (Option<serde_json::Value>, Result<String, String>) {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{') {
        if let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str(trimmed) {
            let id = o.remove("id");
            return match o.remove("text") {
                Some(serde_json::Value::String(t)) => (id, Ok(t)),
                Some(_) => (id, Err("field `text` is not a string".into())),
                None => (id, Err("object has no `text` field".into())),
            };
        }
    }
    (None, Ok(line.to_string()))
}

fn write_line(
    out: &mut impl Write,
    id: Option<&serde_json::Value>,
    s: &Scores,
    error: Option<String>,
) -> anyhow::Result<()> {
    let mut weights = serde_json::Map::new();
    let mut names = Vec::new();
    for (e, w) in s.emotions.present() {
        names.push(e.as_str());
        weights.insert(
            e.as_str().into(),
            ((f64::from(w) * 1e3).round() / 1e3).into(),
        );
    }
    let line = ScoreLine {
        id,
        lang: s.lang.as_str(),
        sentiment: s.sentiment.label.as_str(),
        sentiment_score: round6(s.sentiment.score),
        confidence: round6(s.sentiment.confidence),
        emotions: names,
        emotion_weights: weights,
        error,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    Ok(())
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Below this top-class probability the ONNX model's label is neutral (its prior on a text
/// with no known word is close to uniform, ~0.35 each).
#[cfg(feature = "onnx")]
const ONNX_MIN_CONFIDENCE: f64 = 0.4;

/// A sentiment scorer that takes batches: the lexicon scorer, or an ONNX model whose
/// sentiment replaces the lexicon's (language and emotions stay the lexicon's).
pub enum BatchScorer {
    /// The lexicon scorer.
    Lexicon(Scorer, ScoreConfig),
    /// An ONNX model next to the lexicon scorer.
    #[cfg(feature = "onnx")]
    Onnx(Box<vigie_udfs::onnx::OnnxScorer>, Scorer, ScoreConfig),
}

impl BatchScorer {
    /// Builds the chosen scorer (loading the ONNX model, if any).
    pub fn new(choice: &ScorerChoice, cfg: ScoreConfig) -> anyhow::Result<Self> {
        match choice {
            ScorerChoice::Lexicon => Ok(BatchScorer::Lexicon(Scorer::new(), cfg)),
            #[cfg(feature = "onnx")]
            ScorerChoice::Onnx(path) => Ok(BatchScorer::Onnx(
                Box::new(vigie_udfs::onnx::OnnxScorer::load(path)?),
                Scorer::new(),
                cfg,
            )),
            #[cfg(not(feature = "onnx"))]
            ScorerChoice::Onnx(_) => anyhow::bail!(
                "this vigie was built without the `onnx` feature; rebuild with `--features onnx`"
            ),
        }
    }

    /// Scores of each text, in order.
    pub fn score_batch(&mut self, texts: &[&str]) -> anyhow::Result<Vec<Scores>> {
        match self {
            BatchScorer::Lexicon(s, cfg) => Ok(texts.iter().map(|t| s.score(t, cfg)).collect()),
            #[cfg(feature = "onnx")]
            BatchScorer::Onnx(model, s, cfg) => {
                let sentiments = model.score_batch(texts)?;
                Ok(texts
                    .iter()
                    .zip(sentiments)
                    .map(|(t, m)| {
                        let mut sc = s.score(t, cfg);
                        sc.sentiment = m.to_sentiment();
                        if sc.sentiment.confidence < ONNX_MIN_CONFIDENCE {
                            sc.sentiment.label = vigie_udfs::Label::Neutral;
                        }
                        sc
                    })
                    .collect())
            }
        }
    }
}

/// `vigie score`: stdin → stdout, one NDJSON object per input line, in order.
pub fn score_stdin(opts: &ScoreOpts) -> anyhow::Result<()> {
    let mut scorer = BatchScorer::new(&opts.scoring.scorer, opts.scoring.config())?;
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut lines = stdin.lines();
    let batch = opts.batch.max(1);
    let mut pending: Vec<(Option<serde_json::Value>, Result<String, String>)> =
        Vec::with_capacity(batch);
    loop {
        pending.clear();
        for line in lines.by_ref().take(batch) {
            pending.push(text_of(&line?));
        }
        if pending.is_empty() {
            break;
        }
        let texts: Vec<&str> = pending
            .iter()
            .map(|(_, t)| t.as_deref().unwrap_or(""))
            .collect();
        let scores = scorer.score_batch(&texts)?;
        for ((id, t), s) in pending.iter().zip(&scores) {
            write_line(&mut out, id.as_ref(), s, t.as_ref().err().cloned())?;
        }
    }
    out.flush()?;
    Ok(())
}
