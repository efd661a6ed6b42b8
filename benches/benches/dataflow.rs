//! Throughput of the dataflow graph (upsert → score → trends) in one timely worker, in
//! mentions per second, for inserts and for retractions of the same mentions.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use timely::dataflow::operators::probe::Probe;
use timely::dataflow::operators::Input;
use timely::dataflow::{InputHandle, ProbeHandle};
use vigie_pipeline::graph::GraphSpec;
use vigie_pipeline::graph::{build, Upsert};

const N: usize = 100_000;
const EPOCH: usize = 10_000;

/// Feeds `N` mentions in epochs of `EPOCH`, then deletes them all; returns the two durations.
fn run_once() -> (Duration, Duration) {
    let input_data = vigie_benches::mentions(N, 20);
    timely::execute_directly(move |worker| {
        let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Upsert>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let upserts = scope.input_from(&mut input);
            build(upserts, GraphSpec::default())
                .inner
                .probe_with(&probe);
        });
        let mut t = 1u64;
        let started = Instant::now();
        for chunk in input_data.chunks(EPOCH) {
            input.advance_to(t);
            for (k, b) in chunk {
                input.send((*k, b.clone().map(std::sync::Arc::new), t));
            }
            t += 1;
            input.advance_to(t);
            worker.step_while(|| probe.less_than(input.time()));
        }
        let inserted = started.elapsed();
        let started = Instant::now();
        for chunk in input_data.chunks(EPOCH) {
            for (k, _) in chunk {
                input.send((*k, None, t));
            }
            t += 1;
            input.advance_to(t);
            worker.step_while(|| probe.less_than(input.time()));
        }
        (inserted, started.elapsed())
    })
}

fn dataflow(c: &mut Criterion) {
    let mut g = c.benchmark_group("dataflow");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("insert_100k_1_worker", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_once().0).sum())
    });
    g.bench_function("retract_100k_1_worker", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_once().1).sum())
    });
    g.finish();
}

criterion_group!(benches, dataflow);
criterion_main!(benches);
