//! Each plugin, loaded from its built cdylib and called through `__run` with Arrow C Data
//! Interface arrays, must give exactly what vigie-udfs gives when called directly.

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayData, Int64Array, StringArray};
use vigie_udf_loader_test::Plugin;
use vigie_udfs::{Engagement, ScoreConfig, Scores};

/// Varied texts: English and French (negation, intensifiers, contrast, capitals,
/// exclamation), emoji only, empty and blank, other languages and scripts, a long text, NULLs.
fn texts() -> Vec<Option<String>> {
    let long = "The new release is great and the team was really helpful, \
                but the install guide is confusing and the support chat was slow. "
        .repeat(120);
    let mut texts: Vec<Option<String>> = [
        "I love this, it is absolutely wonderful!",
        "This is terrible. Worst purchase ever, I hate it.",
        "The train leaves at 10:30 from platform 4.",
        "not good at all",
        "Not bad, actually pretty decent",
        "The food was great but the service was awful",
        "I am SO happy with this!!!",
        "VERY ANGRY ABOUT THIS",
        "J'adore ce produit, il est vraiment génial !",
        "C'est nul, je suis très déçu et en colère.",
        "Le rendez-vous est à quinze heures à la mairie.",
        "Ce n'est pas mauvais du tout",
        "Super soirée, merci à toute l'équipe 🎉",
        "😀🎉❤️",
        "😡😡😡",
        "😢",
        "",
        "   ",
        "\t\n",
        "Das ist wirklich sehr gut, danke!",
        "¡Qué horror! No me gusta nada.",
        "今日はとても楽しかったです",
        "هذا رائع جدا",
        "https://example.com/path?q=1 #vigie @someone",
        "12345 67890",
        "Scared and worried about the layoffs, what will happen next?",
        "Can't wait for the launch tomorrow, so excited",
        "I trust this brand, reliable and honest as always",
        "Disgusting. Absolutely gross.",
        "Wow, I did not expect that surprise at all!",
        "e\u{301}te\u{301} magnifique",
        "good good good good good good good good good good good good",
    ]
    .into_iter()
    .map(|s| Some(s.to_string()))
    .collect();
    texts.push(Some(long));
    // NULLs, at the start, middle and end.
    texts.insert(0, None);
    texts.insert(15, None);
    texts.push(None);
    texts
}

fn text_column(texts: &[Option<String>]) -> ArrayData {
    StringArray::from_iter(texts.iter().map(Option::as_deref)).into_data()
}

fn scores(text: &str) -> Scores {
    vigie_udfs::score(text, &ScoreConfig::default())
}

/// The expected column must not be constant, or a plugin returning a constant would pass.
fn assert_varied<T: Ord>(name: &str, expected: &[Option<T>]) {
    let distinct: BTreeSet<&T> = expected.iter().flatten().collect();
    assert!(
        distinct.len() >= 2,
        "{name}: the test batch gives {} distinct value(s); it must give several to mean anything",
        distinct.len()
    );
}

/// Loads a plugin and checks it exports the synchronous UDF ABI (`__run`), not the async one.
fn load_sync(crate_name: &str) -> Plugin {
    let plugin = Plugin::load(crate_name).unwrap();
    assert!(
        plugin.exports("__run"),
        "{}: no __run",
        plugin.path().display()
    );
    assert!(
        !plugin.exports("__start"),
        "{}: exports the async API",
        plugin.path().display()
    );
    plugin
}

/// Checks a TEXT → TEXT plugin on the batch (and on a slice of it, with an offset).
fn check_utf8(crate_name: &str, f: impl Fn(&str) -> String) {
    let plugin = load_sync(crate_name);

    let texts = texts();
    let expected: Vec<Option<String>> = texts.iter().map(|t| t.as_deref().map(&f)).collect();
    assert_varied(crate_name, &expected);

    let got = plugin.run_utf8(vec![text_column(&texts)]).unwrap();
    assert_eq!(got.len(), texts.len(), "{crate_name}: batch length");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "{crate_name}: row {i}, text {:?}", texts[i]);
    }

    // A sliced column (non-zero offset), as a host may pass.
    let sliced = StringArray::from(text_column(&texts))
        .slice(5, 12)
        .into_data();
    let got = plugin.run_utf8(vec![sliced]).unwrap();
    assert_eq!(got, expected[5..17], "{crate_name}: sliced batch");

    // An empty batch.
    let got = plugin.run_utf8(vec![text_column(&[])]).unwrap();
    assert!(got.is_empty(), "{crate_name}: empty batch");
}

/// Checks a TEXT → DOUBLE plugin on the batch, bit for bit.
fn check_f64(crate_name: &str, f: impl Fn(&str) -> f64) {
    let plugin = load_sync(crate_name);

    let texts = texts();
    let expected: Vec<Option<f64>> = texts.iter().map(|t| t.as_deref().map(&f)).collect();
    let bits: Vec<Option<u64>> = expected.iter().map(|v| v.map(f64::to_bits)).collect();
    assert_varied(crate_name, &bits);

    let got = plugin.run_f64(vec![text_column(&texts)]).unwrap();
    assert_eq!(got.len(), texts.len(), "{crate_name}: batch length");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            g.map(f64::to_bits),
            e.map(f64::to_bits),
            "{crate_name}: row {i} gives {g:?}, expected {e:?}, text {:?}",
            texts[i]
        );
    }

    let sliced = StringArray::from(text_column(&texts))
        .slice(5, 12)
        .into_data();
    let got = plugin.run_f64(vec![sliced]).unwrap();
    let got: Vec<_> = got.iter().map(|v| v.map(f64::to_bits)).collect();
    assert_eq!(got, bits[5..17], "{crate_name}: sliced batch");
}

#[test]
fn sentiment_score_plugin_matches_the_library() {
    check_f64("vigie-udf-sentiment-score", |t| scores(t).sentiment.score);
}

#[test]
fn sentiment_label_plugin_matches_the_library() {
    check_utf8("vigie-udf-sentiment-label", |t| {
        scores(t).sentiment.label.as_str().to_string()
    });
}

#[test]
fn emotions_plugin_matches_the_library() {
    check_utf8("vigie-udf-emotions", |t| {
        let names: Vec<&str> = scores(t)
            .emotions
            .present()
            .map(|(e, _)| e.as_str())
            .collect();
        names.join(",")
    });
}

#[test]
fn language_plugin_matches_the_library() {
    check_utf8("vigie-udf-language", |t| {
        scores(t).lang.as_str().to_string()
    });
}

#[test]
fn virality_plugin_matches_the_library() {
    let plugin = load_sync("vigie-udf-virality");

    // (likes, shares, replies, author_followers); None = NULL, negatives count as 0.
    type Row = [Option<i64>; 4];
    let mut rows: Vec<Row> = vec![
        [Some(0), Some(0), Some(0), Some(0)],
        [Some(1), Some(0), Some(0), Some(0)],
        [Some(0), Some(1), Some(0), Some(0)],
        [Some(0), Some(0), Some(1), Some(0)],
        [Some(0), Some(0), Some(0), Some(1)],
        [Some(10), Some(2), Some(3), Some(100)],
        [Some(10), Some(2), Some(3), Some(1_000_000)],
        [Some(2), Some(10), Some(3), Some(100)],
        [Some(3), Some(2), Some(10), Some(100)],
        [Some(5_000), Some(1_200), Some(300), Some(50)],
        [Some(5_000), Some(1_200), Some(300), Some(5_000_000)],
        [Some(-5), Some(3), Some(1), Some(10)],
        [Some(7), Some(-1), Some(-100), Some(-3)],
        [
            Some(i64::MAX),
            Some(i64::MAX),
            Some(i64::MAX),
            Some(i64::MAX),
        ],
        [Some(i64::MIN), Some(0), Some(0), Some(0)],
        [Some(1), Some(1), Some(1), Some(i64::MAX)],
        [None, Some(1), Some(1), Some(1)],
        [Some(1), None, Some(1), Some(1)],
        [Some(1), Some(1), None, Some(1)],
        [Some(1), Some(1), Some(1), None],
        [None, None, None, None],
    ];
    for i in 0..12i64 {
        rows.push([
            Some(i * i),
            Some(i),
            Some(3 * i),
            Some(10i64.pow(i as u32 % 7)),
        ]);
    }

    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let expected: Vec<Option<u64>> = rows
        .iter()
        .map(|r| match *r {
            [Some(likes), Some(shares), Some(replies), Some(followers)] => {
                Some(vigie_udfs::virality(&Engagement {
                    likes: count(likes),
                    shares: count(shares),
                    replies: count(replies),
                    author_followers: count(followers),
                }))
            }
            _ => None,
        })
        .map(|v| v.map(f64::to_bits))
        .collect();
    assert_varied("vigie-udf-virality", &expected);
    // Argument order matters to the library on this batch, so a plugin that swapped two
    // arguments would fail.
    let swapped = vigie_udfs::virality(&Engagement {
        likes: 2,
        shares: 10,
        replies: 3,
        author_followers: 100,
    });
    assert_ne!(
        expected[5],
        Some(swapped.to_bits()),
        "test batch does not tell likes from shares"
    );

    let columns: Vec<ArrayData> = (0..4)
        .map(|c| Int64Array::from_iter(rows.iter().map(|r| r[c])).into_data())
        .collect();
    let got = plugin.run_f64(columns).unwrap();
    let got: Vec<Option<u64>> = got.iter().map(|v| v.map(f64::to_bits)).collect();
    assert_eq!(got.len(), rows.len(), "batch length");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            g.map(f64::from_bits),
            e.map(f64::from_bits),
            "row {i}: {:?}",
            rows[i]
        );
    }
}

/// A batch of the wrong type makes the UDF panic inside the plugin; `__run` must catch it and
/// answer `RunResult::Err`, not unwind into (or abort) the host.
#[test]
fn a_panicking_udf_reports_an_error() {
    let plugin = Plugin::load("vigie-udf-language").unwrap();
    let wrong = Int64Array::from(vec![1, 2, 3]).into_data();
    eprintln!("a_panicking_udf_reports_an_error: the plugin's panic message below is expected");
    let err = plugin.run(vec![wrong]).unwrap_err();
    assert!(err.contains("panicked"), "{err}");
    // And the plugin still works afterwards.
    let got = plugin
        .run_utf8(vec![text_column(&[Some("hello".into())])])
        .unwrap();
    assert_eq!(got, vec![Some(scores("hello").lang.as_str().to_string())]);
}
