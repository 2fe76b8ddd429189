//! hookd against libvirt's nwfilter, both driven by a real libvirtd at the
//! same N. Runs inside the sandbox of `vm-tests/bench-nwfilter.sh` (its own
//! network namespace with bridge br0, a libvirtd with hookd's hook, hookd
//! configured not to touch VMs without policy).
//!
//! For each N, three guests are created paused, each with a multi-queue tap
//! on br0: one without filter, one whose NIC references an nwfilter of the N
//! rules, one with hookd policy of the same N rules. The generator opens
//! one more queue of each tap and writes the routed topology's frames to the
//! sink's veth, also on br0. A paused guest never runs, but its tap carries
//! the frames written to it through the bridge, its filters included.
//! nwfilter instantiates its rules at every start (ebtables, one command
//! per rule), so each N's guests are started once and the variants are
//! interleaved over rounds while they run.

use super::*;

const VARIANTS: [&str; 3] = ["none (bridged)", "nwfilter", "hookd"];
const MACS: [&str; 3] = [
    "52:54:00:00:01:01",
    "52:54:00:00:01:02",
    "52:54:00:00:01:03",
];
const TAPS: [&str; 3] = ["hb-none", "hb-nwfilter", "hb-hookd"];

fn virsh(args: &[&str]) {
    let out = std::process::Command::new("virsh")
        .args(["-q", "-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("running virsh");
    assert!(
        out.status.success(),
        "virsh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The N rules as an nwfilter on the VM's outgoing IPv4 (ebtables), all
/// other IPv4 from the VM dropped: the same verdicts as hookd's policy.
fn nwfilter_xml(name: &str, rules: &[Rule]) -> String {
    let mut s = format!("<filter name='{name}' chain='ipv4'>\n");
    for r in rules {
        let _ = writeln!(
            s,
            "<rule action='accept' direction='out' priority='500'><ip protocol='udp' \
             dstipaddr='{}' dstipmask='{}' dstportstart='{}' dstportend='{}'/></rule>",
            r.net, r.len, r.port, r.port
        );
    }
    s + "<rule action='drop' direction='out' priority='600'><ip/></rule>\n</filter>\n"
}

/// Variant `vi`'s guest at N: no OS (it stays paused), one virtio NIC with
/// two queues on br0, plus the variant's filter.
fn domain_xml(vi: usize, n: usize, rules: &[Rule]) -> String {
    let (metadata, filterref) = match vi {
        1 => (
            String::new(),
            format!("<filterref filter='hookd-bench-{n}'/>"),
        ),
        2 => (
            format!("<metadata>{}</metadata>", hookd_policy(rules, MACS[vi])),
            String::new(),
        ),
        _ => (String::new(), String::new()),
    };
    format!(
        "<domain type='qemu'><name>{tap}-{n}</name>{metadata}<memory unit='MiB'>64</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
         <emulator>/usr/bin/qemu-system-x86_64</emulator><interface type='bridge'>\
         <mac address='{mac}'/><source bridge='br0'/><target dev='{tap}'/><model type='virtio'/>\
         <driver name='qemu' queues='2'/>{filterref}</interface>\
         <controller type='usb' model='none'/><memballoon model='none'/></devices></domain>",
        tap = TAPS[vi],
        mac = MACS[vi],
    )
}

/// Frames that no rule allows (the sink's port 7) must not reach the sink
/// through a filtered tap, and must through the unfiltered one: a filter
/// that libvirt or hookd failed to install fails the benchmark.
fn check_enforced(vi: usize, tap: &mut Tap, sink_mac: [u8; 6]) {
    const SENT: u64 = 1000;
    let denied = eth(
        sink_mac,
        mac(MACS[vi]),
        0x0800,
        &ipv4(VM_IP, SINK_IP, 17, &udp(10_000, 7, &[0u8; 18])),
    );
    let rx0 = sink_rx();
    for _ in 0..SENT {
        tap.send(&denied);
    }
    std::thread::sleep(Duration::from_millis(100));
    let got = sink_rx() - rx0;
    if vi == 0 {
        assert!(
            got >= SENT,
            "{}: {got} of {SENT} frames arrived",
            VARIANTS[vi]
        );
    } else {
        assert!(
            got < SENT / 10,
            "{}: {got} of {SENT} frames no rule allows arrived: the filter is not enforced",
            VARIANTS[vi]
        );
    }
}

pub fn run(out_dir: &std::path::Path) {
    let _cleanup = Cleanup(&[SINK_NS]);
    let sink_mac = make_sink(None);
    sh("ip link set veth-h master br0 && ip link set veth-h up");
    // The sink never sends, so the bridge would forget where its MAC is
    // (after 300 s; nwfilter takes longer to start) and flood every tap.
    sh(&format!(
        "bridge fdb replace {} dev veth-h master static",
        mac_text(sink_mac)
    ));
    let work = tempfile::tempdir().expect("work directory");
    let mut results = samples(VARIANTS.len());
    // starts[size][variant]: seconds `virsh create --paused` took.
    let mut starts = vec![vec![0.0; VARIANTS.len()]; SIZES.len()];
    for (si, &n) in SIZES.iter().enumerate() {
        let rs = rules(n);
        let filter = work.path().join(format!("filter-{n}.xml"));
        std::fs::write(&filter, nwfilter_xml(&format!("hookd-bench-{n}"), &rs))
            .expect("writing the filter");
        virsh(&["nwfilter-define", &filter.to_string_lossy()]);
        let mut taps = Vec::new();
        for vi in 0..VARIANTS.len() {
            let xml = work.path().join(format!("{}-{n}.xml", TAPS[vi]));
            std::fs::write(&xml, domain_xml(vi, n, &rs)).expect("writing the domain");
            let t = Instant::now();
            virsh(&["create", &xml.to_string_lossy(), "--paused"]);
            starts[si][vi] = t.elapsed().as_secs_f64();
            let mut tap = Tap::attach_queue(TAPS[vi]);
            check_enforced(vi, &mut tap, sink_mac);
            taps.push(tap);
        }
        let frames: Vec<[Vec<Vec<u8>>; 2]> = (0..VARIANTS.len())
            .map(|vi| {
                let src = mac(MACS[vi]);
                [
                    frames(&rs, false, sink_mac, src),
                    frames(&rs, true, sink_mac, src),
                ]
            })
            .collect();
        for round in 0..ROUNDS {
            for (vi, tap) in taps.iter_mut().enumerate() {
                for (mi, f) in frames[vi].iter().enumerate() {
                    let (pps, cpu) = measure(tap, f);
                    results[mi][si][vi].0.push(pps);
                    results[mi][si][vi].1.push(cpu);
                }
            }
            eprintln!("libvirt round {}/{ROUNDS}: N = {n} done", round + 1);
        }
        drop(taps);
        for tap in TAPS {
            virsh(&["destroy", &format!("{tap}-{n}")]);
        }
        virsh(&["nwfilter-undefine", &format!("hookd-bench-{n}")]);
    }
    let (md, plot) = render(&mut results, &starts);
    std::fs::write(out_dir.join("datapath-libvirt.md"), &md).expect("writing the report");
    std::fs::write(out_dir.join("datapath-libvirt.svg"), &plot).expect("writing the plot");
    print!("{md}");
}

fn render(results: &mut Samples, starts: &[Vec<f64>]) -> (String, String) {
    let mut md = String::new();
    let med = tables(&mut md, results, &VARIANTS);
    let _ = writeln!(
        md,
        "\n### hookd against nwfilter at the same N\n\n\
         | N | hookd / nwfilter, mix \"last\" | mix \"spread\" | `virsh create --paused`: no filter | nwfilter | hookd |\n\
         |---|---|---|---|---|---|"
    );
    for (si, n) in SIZES.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {n} | {:.2}x | {:.2}x | {:.2} s | {:.2} s | {:.2} s |",
            med[0][si][2].0 / med[0][si][1].0,
            med[1][si][2].0 / med[1][si][1].0,
            starts[si][0],
            starts[si][1],
            starts[si][2]
        );
    }
    let title =
        "Delivered 64-byte UDP packets/s, ratio to no filter (libvirt, bridged, mix \"last\")";
    (md, svg(&med, &VARIANTS, title))
}
