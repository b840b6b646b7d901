#if canImport(Glibc)
import CEctoLinux
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts a detached POSIX thread that runs `body` once.
///
/// What the production modules use instead of Foundation's `Thread` (not in FoundationEssentials).
/// - Parameters:
///   - name: shown by `top -H`, `ps -L` and in core dumps; Linux keeps at most 15 bytes, so longer
///     names are cut there (pthread_setname_np refuses longer ones outright).
///   - stackSize: bytes; nil keeps the system default (RLIMIT_STACK, usually 8 MiB of address
///     space, of which only touched pages are resident).
///
/// A thread that cannot be created (out of memory or over the process limit) stops the process
/// with the reason: every caller needs its thread to work at all.
public func startThread(name: String, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    if let stackSize {
        let result = pthread_attr_setstacksize(&attributes, stackSize)
        precondition(result == 0, "thread \(name): stack size \(stackSize): \(String(cString: strerror(result)))")
    }
    let start = ThreadStart(name: name, body: body)
    let context = Unmanaged.passRetained(start).toOpaque()
    #if canImport(Glibc)
    var thread = pthread_t()
    #else
    var thread: pthread_t?
    #endif
    let result = pthread_create(
        &thread, &attributes,
        { context in
            let start = Unmanaged<ThreadStart>.fromOpaque(context!).takeRetainedValue()
            start.run()
            return nil
        }, context)
    if result != 0 {
        Unmanaged<ThreadStart>.fromOpaque(context).release()
        fatalError("cannot start thread \(name): \(String(cString: strerror(result)))")
    }
}

/// What the new thread needs; handed over through pthread_create's context pointer.
private final class ThreadStart: Sendable {
    let name: String
    let body: @Sendable () -> Void

    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    func run() {
        #if canImport(Glibc)
        ecto_set_thread_name(kernelThreadName(name))
        #else
        pthread_setname_np(kernelThreadName(name))
        #endif
        body()
    }
}

/// `name` as the kernel keeps it for a thread: at most 15 bytes, cut at a character boundary.
public func kernelThreadName(_ name: String) -> String {
    var bytes = Array(name.utf8.prefix(15))
    while !bytes.isEmpty, String(validating: bytes, as: UTF8.self) == nil { bytes.removeLast() }
    return String(decoding: bytes, as: UTF8.self)
}
