//! The report: Markdown tables of medians and ratios, the goals, SVG plots.

use super::*;

/// results[mix][size][variant] = (pps samples, CPU ns samples).
pub(crate) type Samples = Vec<Vec<Vec<(Vec<f64>, Vec<f64>)>>>;
/// Per mix, size and variant: (delivered pps, ratio to no filter, CPU ns).
pub(crate) type Medians = Vec<Vec<Vec<(f64, f64, f64)>>>;

pub(crate) fn samples(variants: usize) -> Samples {
    vec![vec![vec![(Vec::new(), Vec::new()); variants]; SIZES.len()]; 2]
}

/// The markdown tables, the goals checked, and an SVG plot of delivered
/// rate against N (ratio to no filter, mix "last").
pub(crate) fn render(results: &mut Samples) -> (String, String) {
    let mut md = String::new();
    let med = tables(&mut md, results, &VARIANTS);
    goals(&mut md, &med);
    let title = "Delivered 64-byte UDP packets/s, ratio to no filter (routed, mix \"last\")";
    (md, svg(&med, &VARIANTS, title))
}

/// Per mix, a table of every size and variant, with ratios to variants[0]
/// (no filter); returns the medians.
pub(crate) fn tables(md: &mut String, results: &mut Samples, variants: &[&str]) -> Medians {
    let mut med: Medians = vec![vec![vec![(0.0, 0.0, 0.0); variants.len()]; SIZES.len()]; 2];
    for (mi, mix) in ["last", "spread"].iter().enumerate() {
        let _ = writeln!(
            md,
            "\n### Mix \"{mix}\": {}\n",
            if mi == 0 {
                "only the last rule matches"
            } else {
                "each packet matches one of the rules, all in turn"
            }
        );
        let _ = writeln!(
            md,
            "| N | variant | delivered pps (median) | spread | x no filter | CPU ns / packet | x no filter |\n|---|---|---|---|---|---|---|"
        );
        for (si, n) in SIZES.iter().enumerate() {
            let (none_pps, _) = median_spread(&mut results[mi][si][0].0);
            let (none_cpu, _) = median_spread(&mut results[mi][si][0].1);
            for (vi, v) in variants.iter().enumerate() {
                let (pps, spread) = median_spread(&mut results[mi][si][vi].0);
                let (cpu, _) = median_spread(&mut results[mi][si][vi].1);
                med[mi][si][vi] = (pps, pps / none_pps, cpu);
                let _ = writeln!(
                    md,
                    "| {n} | {v} | {pps:.0} | {:.0}% | {:.2} | {cpu:.0} | {:.2} |",
                    spread * 100.0,
                    pps / none_pps,
                    cpu / none_cpu
                );
            }
        }
    }
    med
}

/// The data-path goals at the largest N, as pass or short by how much.
pub(crate) fn goals(md: &mut String, med: &Medians) {
    let big = SIZES.len() - 1;
    let idx = |name: &str| VARIANTS.iter().position(|v| *v == name).unwrap_or(0);
    let _ = writeln!(md, "\n### Goals at N = {}\n", SIZES[big]);
    for (mi, mix) in ["last", "spread"].iter().enumerate() {
        let m = &med[mi][big];
        let h = m[idx("hookd")].0;
        for (what, target, got) in [
            ("hookd / no filter", 0.9, h / m[idx("none")].0),
            ("hookd / iptables linear", 10.0, h / m[idx("iptables")].0),
            ("hookd / nftables set", 1.0, h / m[idx("nft-set")].0),
        ] {
            let verdict = if got >= target {
                "pass".to_string()
            } else {
                format!("short by {:.0}%", (1.0 - got / target) * 100.0)
            };
            let _ = writeln!(
                md,
                "- mix \"{mix}\": {what} = {got:.2}x (goal at least {target}x): **{verdict}**"
            );
        }
    }
}

/// An SVG plot of each variant's delivered rate against N, as a ratio to
/// variants[0] (mix "last").
pub(crate) fn svg(med: &Medians, variants: &[&str], title: &str) -> String {
    let (w, h, left, top, pw, ph) = (720.0, 420.0, 70.0, 40.0, 480.0, 320.0);
    let color = |v: &str| match v {
        "iptables" => "#d62728",
        "iptables+ct" => "#ff7f0e",
        "nft-chain" => "#9467bd",
        "nft-set" => "#2ca02c",
        "nwfilter" => "#8c564b",
        "tcx-empty" => "#17becf",
        "hookd" => "#1f77b4",
        _ => "#444",
    };
    let ymax = med[0]
        .iter()
        .flat_map(|row| row.iter().map(|c| c.1))
        .fold(1.0f64, f64::max)
        .ceil();
    let x = |si: usize| left + pw * si as f64 / (SIZES.len() - 1) as f64;
    let y = |r: f64| top + ph * (1.0 - r / ymax);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{left}' y='20' font-size='14'>{title}</text>\n\
         <line x1='{left}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n<line x1='{left}' y1='{top}' x2='{left}' y2='{}' stroke='black'/>\n",
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    for (si, n) in SIZES.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' text-anchor='middle'>N = {n}</text>",
            x(si),
            top + ph + 18.0
        );
    }
    for k in 0..=4 {
        let r = ymax * k as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' text-anchor='end'>{r:.2}</text><line x1='{left}' y1='{}' x2='{}' y2='{}' stroke='#ddd'/>",
            left - 6.0,
            y(r) + 4.0,
            y(r),
            left + pw,
            y(r)
        );
    }
    for (vi, v) in variants.iter().enumerate() {
        let pts: Vec<String> = (0..SIZES.len())
            .map(|si| format!("{:.1},{:.1}", x(si), y(med[0][si][vi].1)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill='none' stroke='{}' stroke-width='2' points='{}'/>\n<text x='{}' y='{}' fill='{}'>{v}</text>",
            color(v),
            pts.join(" "),
            left + pw + 12.0,
            top + 16.0 * vi as f64 + 10.0,
            color(v)
        );
    }
    s + "</svg>\n"
}
