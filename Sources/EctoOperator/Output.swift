/// A failure of an operator workflow, with the message for the operator. The CLI prints it on
/// stderr and exits with `exitCode` (1: refused).
public struct OperatorFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var exitCode: Int32

    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { message }
}

/// Where an operator workflow reports its progress, one line at a time (the CLI prints them on
/// stdout). The workflows never print themselves: the CLI only parses and prints.
public struct Output: Sendable {
    private let sink: @Sendable (String) -> Void

    public init(_ sink: @escaping @Sendable (String) -> Void) { self.sink = sink }

    public func say(_ line: String) { sink(line) }

    /// Ends the workflow with `message` (thrown as `OperatorFailure`).
    public func fail(_ message: String) throws -> Never { throw OperatorFailure(message) }
}
