/* Compile-time stand-in only (javac resolves SemanticConcept's overloaded
 * constructors); MgSpiceReference never builds one and it is not on the
 * run-time class path. */
package edu.stanford.nlp.ling;

public class IndexedWord {
	public String lemma() {
		return "";
	}
}
