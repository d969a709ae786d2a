//! CPU of matching one long URI against resource templates, the matcher
//! alone (no limit applies here): `cargo run --release -p vmcp-gateway
//! --example uri_template_bench [MiB]`. Prints a markdown table.

use std::time::Instant;

use vmcp_gateway::uri_template::UriTemplate;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let body = "x".repeat(mib * 1024 * 1024);
    let cases = [
        ("example://items/{id}", format!("example://items/{body}")),
        ("example://items/{id}", format!("example://items/{body}/")),
        (
            "t://{+a}{+b}/{c}/end",
            format!("t://{}", "x/".repeat(body.len() / 2)),
        ),
    ];
    println!("| template | URI ({mib} MiB) | matched | steps | median of 9 |");
    println!("|---|---|---|---|---|");
    for (template, uri) in &cases {
        let compiled = UriTemplate::compile(template);
        let mut times = Vec::new();
        let mut run = compiled.run(uri);
        for _ in 0..9 {
            let start = Instant::now();
            run = compiled.run(std::hint::black_box(uri));
            times.push(start.elapsed());
        }
        times.sort();
        let shape = if uri.ends_with('/') {
            "ends in `/`"
        } else {
            "plain"
        };
        println!(
            "| `{template}` | {shape} | {} | {} | {:.1} ms |",
            run.matched,
            run.steps,
            times[4].as_secs_f64() * 1000.0
        );
    }
}
