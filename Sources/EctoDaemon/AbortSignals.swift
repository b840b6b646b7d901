import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// SIGABRT and SIGQUIT sent from outside end the daemon at once, after every thread's backtrace.
///
/// systemd's watchdog sends SIGABRT (`WatchdogSignal=`'s default) when `WATCHDOG=1` stops; `kill
/// -ABRT` and Ctrl-\ (SIGQUIT) ask for the same. The Swift runtime's crash handler (Linux, Swift 6)
/// catches both like a crash: it pauses the other threads, has the `swift-backtrace` helper print
/// every thread's stack, resets its handlers to `SIG_DFL` and *returns*. After a fault that is
/// fatal, because the faulting instruction runs again (SIGILL of a failed precondition, SIGSEGV),
/// and `abort()` raises SIGABRT a second time by itself. A signal sent with `kill()` (`si_code`
/// `SI_USER`) is raised by nobody again: the interrupted thread carries on and the daemon lived on
/// (until systemd's SIGKILL at `TimeoutAbortSec=`), with one thread of the runtime's backtracer
/// spinning.
///
/// So both signals are blocked in every thread (before any thread starts, like SIGTERM) and taken
/// here, by a thread of their own (it keeps working when the main loop is the stuck part) with
/// `sigwaitinfo`: it logs the sender and what the watchdog found stuck, raises the signal in
/// itself with the runtime's handler still in place (every thread's backtrace, as before), then
/// raises it again with the default action, so the process ends by that signal (core dump where
/// enabled) and systemd restarts it.
///
/// Faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) are deliberately not blocked: the kernel kills
/// a thread that faults with its signal blocked without running any handler (no backtrace). A real
/// `abort()` unblocks SIGABRT in its own thread first, so it still crashes where it was called.
final class AbortSignalCatcher: Sendable {
    /// The signals taken here.
    static let numbers: [Int32] = [SIGABRT, SIGQUIT]

    /// Adds them to `set` (to block them together with the main loop's signals).
    static func add(to set: inout sigset_t) {
        for number in numbers { sigaddset(&set, number) }
    }

    private let logger: Logger
    private let diagnosis = Mutex<(@Sendable () -> String)?>(nil)

    init(logger: Logger) { self.logger = logger }

    /// What to add to the log line, asked when a signal arrives (the watchdog's verdict).
    func explain(with diagnosis: @escaping @Sendable () -> String) {
        self.diagnosis.withLock { $0 = diagnosis }
    }

    /// Starts the waiting thread. The calling thread must already block `numbers`.
    func start() {
        // The runtime's crash handler runs on this thread's stack (no alternate stack here).
        startThread(name: "abort signals", stackSize: 256 * 1024) { [self] in
            waitForSignals()
        }
    }

    private func waitForSignals() -> Never {
        var wanted = sigset_t()
        sigemptyset(&wanted)
        Self.add(to: &wanted)
        while true {
            var info = siginfo_t()
            let signal = sigwaitinfo(&wanted, &info)
            // EINTR: e.g. the crash handler of another thread pausing this one.
            guard signal > 0 else { continue }
            logger.critical(
                "\(describe(signal, info)); printing every thread's backtrace, then exiting by \(Self.name(signal))")
            Self.end(by: signal)
        }
    }

    private func describe(_ signal: Int32, _ info: siginfo_t) -> String {
        var text = "received \(Self.name(signal))"
        if info.si_code == SI_USER || info.si_code == SI_QUEUE {
            let sender = info._sifields._kill.si_pid
            let command = (try? String(contentsOfFile: "/proc/\(sender)/comm", encoding: .utf8))?
                .trimmed()
            text += " from pid \(sender)" + (command.map { " (\($0))" } ?? "")
        }
        if let diagnosis = diagnosis.withLock({ $0 }) { text += ": " + diagnosis() }
        return text
    }

    private static func name(_ signal: Int32) -> String {
        signal == SIGABRT ? "SIGABRT" : signal == SIGQUIT ? "SIGQUIT" : "signal \(signal)"
    }

    /// Raises `signal` in this thread once with whatever handler is installed (the Swift runtime's
    /// prints every thread's backtrace and returns), then with the default action, which ends the
    /// process. Where no handler is installed (`SWIFT_BACKTRACE=enable=no`) the first raise ends it.
    private static func end(by signal: Int32) -> Never {
        var only = sigset_t()
        sigemptyset(&only)
        sigaddset(&only, signal)
        pthread_sigmask(SIG_UNBLOCK, &only, nil)
        raise(signal)
        Glibc.signal(signal, SIG_DFL)
        raise(signal)
        abort()
    }
}
