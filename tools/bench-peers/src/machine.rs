//! What the benchmark ran on: CPU, memory, kernel, file system and disk of the data
//! directory. Read from /proc, /sys, `findmnt` and `df`.

use std::path::Path;
use std::process::Command;

/// `(what, description)` pairs.
pub fn describe(dir: &Path) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    facts.push(("cpu", format!("{cores} cores available, {model}")));
    let memory = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "unknown".into());
    facts.push(("memory", memory));
    facts.push((
        "kernel",
        format!(
            "{} {}",
            read("/proc/sys/kernel/ostype").trim(),
            read("/proc/sys/kernel/osrelease").trim()
        ),
    ));
    let mount = run("findmnt", &["-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T"], dir);
    facts.push(("file system", mount.clone()));
    let df = run("df", &["-h", "--output=size,avail"], dir);
    let df = df
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>();
    if df.len() == 2 {
        facts.push(("space", format!("{} total, {} available", df[0], df[1])));
    }
    if let Some(device) = mount.split_whitespace().next() {
        facts.push(("disk", describe_block_device(device)));
    }
    facts.push(("data directory", dir.display().to_string()));
    facts.push(("load average at start", load_average()));
    facts
}

/// Rotational or not, size, scheduler and model of the disk behind `/dev/NAME`.
fn describe_block_device(device: &str) -> String {
    let Some(name) = device.strip_prefix("/dev/") else {
        return device.to_string();
    };
    // A partition's queue settings live on its parent disk.
    let class = Path::new("/sys/class/block").join(name);
    let disk = if class.join("partition").exists() {
        std::fs::canonicalize(&class)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| name.to_string())
    } else {
        name.to_string()
    };
    let sys = Path::new("/sys/block").join(&disk);
    let get = |rel: &str| {
        std::fs::read_to_string(sys.join(rel))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut parts = vec![device.to_string()];
    if let Some(model) = get("device/model").filter(|m| !m.is_empty()) {
        parts.push(model);
    }
    if let Some(sectors) = get("size").and_then(|s| s.parse::<u64>().ok()) {
        parts.push(format!(
            "{:.0} GiB",
            (sectors * 512) as f64 / (1u64 << 30) as f64
        ));
    }
    match get("queue/rotational").as_deref() {
        Some("0") => parts.push("non-rotational".into()),
        Some("1") => parts.push("reported rotational (virtual disks often say so)".into()),
        _ => {}
    }
    if disk.starts_with("vd") {
        parts.push("virtio".into());
    }
    if let Some(scheduler) = get("queue/scheduler") {
        parts.push(format!("scheduler {scheduler}"));
    }
    if let Some(cache) = get("queue/write_cache") {
        parts.push(format!("write cache: {cache}"));
    }
    parts.join(", ")
}

/// The 1, 5 and 15 minute load averages: anything else running skews the figures.
pub fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .arg(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            // One line per output line, with runs of spaces squeezed.
            text.lines()
                .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|| format!("unknown ({program} failed)"))
}
