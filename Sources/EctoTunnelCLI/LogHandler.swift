import EctoPlatform
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Log lines on stderr: `2026-11-21T10:00:00.123Z warning [tunnel.name=gw ssh.target=u@h:22] message`.
/// Under journald (stderr is the stream `JOURNAL_STREAM` names) each line instead starts with its
/// syslog priority (`<4>`), which journald strips and records, so `journalctl -p warning` works;
/// the timestamp is left to journald. journald makes one entry per line, so every line of a
/// multi-line message carries the priority (continuation lines indented by two spaces).
struct StderrLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    let label: String
    let journald: Bool

    init(label: String, level: Logger.Level, journald: Bool) {
        self.label = label
        self.logLevel = level
        self.journald = journald
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        writeStandardError(
            Self.format(
                level: event.level, fields: fields, message: "\(event.message)", journald: journald,
                timestamp: Self.timestamp()))
    }

    /// The text written for one message: one line, or several for a multi-line message; under
    /// journald every line starts with the priority.
    static func format(
        level: Logger.Level, fields: String, message: String, journald: Bool, timestamp: String
    ) -> String {
        var head = journald ? "" : timestamp + " "
        head += "\(level.rawValue)"
        if !fields.isEmpty { head += " [\(fields)]" }
        let lines = message.split(separator: "\n", omittingEmptySubsequences: false)
        var text = ""
        for (index, line) in lines.enumerated() {
            if journald { text += "<\(priority(level))>" }
            text += index == 0 ? head + " " + line : "  " + line
            text += "\n"
        }
        return text
    }

    /// Whether stderr is the journal stream systemd set up: `JOURNAL_STREAM` is `DEVICE:INODE` of
    /// it, and only counts when fd 2 is still that very stream (systemd's documented check). A
    /// process whose stderr was redirected (a daemon started by a CLI run from a service, writing
    /// to daemon.log) inherits the variable but must not write priority prefixes into a file.
    static func stderrIsJournal(_ environment: [String: String]) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return journalStream(value, matchesDevice: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    static func journalStream(_ value: String, matchesDevice device: UInt64, inode: UInt64) -> Bool {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let d = UInt64(parts[0]), let i = UInt64(parts[1]) else { return false }
        return d == device && i == inode
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var time = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &time)
        let day =
            zeroPadded(time.tm_year + 1900, width: 4) + "-" + zeroPadded(time.tm_mon + 1, width: 2) + "-"
            + zeroPadded(time.tm_mday, width: 2)
        let clock =
            zeroPadded(time.tm_hour, width: 2) + ":" + zeroPadded(time.tm_min, width: 2) + ":"
            + zeroPadded(time.tm_sec, width: 2) + "." + zeroPadded(ts.tv_nsec / 1_000_000, width: 3)
        return day + "T" + clock + "Z"
    }
}

/// Writes `text` to stderr (fd 2) in full, unbuffered: log lines and error messages.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        guard
            let written = try? Syscall.blocking(
                "write", { bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) } }), written > 0
        else { return }
        bytes = bytes.dropFirst(written)
    }
}
