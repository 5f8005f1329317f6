#if canImport(Glibc)
import Glibc
#endif
import TelematicsWire

/// Standard output written in large blocks.
struct StandardOutput {
    func write(_ bytes: [UInt8]) throws(FileError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: "standard output", errno: errno)
            }
            offset += n
        }
    }
}

/// A one-line progress display on standard error, shown only when standard
/// error is a terminal (so logs and pipes stay clean).
final class Progress {
    private let label: String
    private let unit: String
    private let enabled: Bool
    private let started = monotonicSeconds()
    private var lastShown = 0.0

    init(label: String, unit: String, enabled: Bool = true) {
        self.label = label
        self.unit = unit
        self.enabled = enabled && isatty(2) != 0
    }

    /// Redraws the line at most four times a second.
    func update(_ done: Int, bytes: UInt64? = nil, detail: @autoclosure () -> String? = nil) {
        guard enabled else { return }
        let now = monotonicSeconds()
        guard now - lastShown >= 0.25 else { return }
        lastShown = now
        show(done, bytes: bytes, detail: detail(), now: now, final: false)
    }

    /// Draws the final line.
    func finish(_ done: Int, bytes: UInt64? = nil) {
        guard enabled else { return }
        show(done, bytes: bytes, detail: nil, now: monotonicSeconds(), final: true)
    }

    private func show(_ done: Int, bytes: UInt64?, detail: String?, now: Double, final: Bool) {
        let elapsed = max(now - started, 1e-9)
        var line = "\r\(label): \(done) \(unit), \(Int(Double(done) / elapsed)) \(unit)/s"
        if let bytes { line += ", \(bytes >> 20) MiB read" }
        if let detail { line += ", " + detail }
        line += ", \(Int(elapsed)).\(Int(elapsed * 10) % 10) s"
        line += final ? "\u{1B}[K\n" : "\u{1B}[K"
        writeStandardError(line)
    }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Writes `text` to standard error, unbuffered.
func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}
