/**
 * Types for the parts of the `stun` package (nodertc, 2.1.0, CommonJS, ships no types) that
 * wzp uses: building requests and decoding messages. Its `request()` is deliberately not
 * declared: it closes the caller's socket and gives up only after 63.5 s.
 */
declare module 'stun' {
  namespace stun {
    interface AddressValue {
      address: string;
      port: number;
      family: 'IPv4' | 'IPv6';
    }

    interface StunAttribute {
      readonly type: number;
      readonly value: unknown;
    }

    interface StunMessage {
      readonly type: number;
      readonly transactionId: Buffer;
      /** The first attribute of this type. */
      getAttribute(type: number): StunAttribute | undefined;
    }

    interface StunRequest extends StunMessage {
      /** Returns undefined when an attribute of this type is already present. */
      addAttribute(type: number, ...values: unknown[]): StunAttribute | undefined;
      /** Must be the last attribute added. */
      addFingerprint(): boolean;
      toBuffer(): Buffer;
    }

    /** Throws assorted errors (assert, RangeError, binary-data) on malformed input. */
    function decode(message: Buffer): StunMessage;
    function createMessage(type: number, transaction?: Buffer): StunRequest;
  }
  export = stun;
}
