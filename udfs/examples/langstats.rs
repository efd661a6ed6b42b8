//! Language detection on the dev corpus: accuracy and how often `whatlang` is asked.
//! `cargo run --release -p vigie-udfs --example langstats`
use vigie_udfs::{Lang, Scorer};

fn main() {
    let mut s = Scorer::new();
    for (file, want) in [
        ("eval/data/vigie-en-tune.ndjson", Lang::En),
        ("eval/data/vigie-en-holdout.ndjson", Lang::En),
        ("eval/data/vigie-fr-tune.ndjson", Lang::Fr),
        ("eval/data/vigie-fr-holdout.ndjson", Lang::Fr),
    ] {
        let text = std::fs::read_to_string(file).expect(file);
        let (mut n, mut ok, mut model) = (0, 0, 0);
        for line in text.lines() {
            let t = line
                .split("\"text\": \"")
                .nth(1)
                .and_then(|r| r.split("\", \"label\"").next())
                .unwrap_or("");
            let (l, m) = s.detect_language_traced(t);
            n += 1;
            ok += usize::from(l == want);
            model += usize::from(m);
            if l != want && std::env::var_os("VERBOSE").is_some() {
                println!("  {l:?} {m} {t}");
            }
        }
        println!("{file}: {ok}/{n} right, model asked {model} times");
    }
}
