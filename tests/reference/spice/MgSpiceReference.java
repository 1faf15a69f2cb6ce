/* medground test reference (tests/test_eval_spice.py): scores given
 * scene-graph tuples with spice-1.0.jar's own scoring classes
 * (SemanticConcept, SemanticTuple, TupleSet, TupleFilter, Evaluation) and
 * Meteor 1.5's SynonymDictionary from the jar's lib/, without the CoreNLP
 * parse (whose models cannot be downloaded here). Writes the JSON the jar
 * writes with -out FILE -detailed -subset (not pretty-printed).
 *
 * Input: [{"image_id": id, "test": [tuple, ...], "refs": [tuple, ...]}, ...]
 * where a tuple is a list of 1-3 concepts and a concept a list of words
 * (more than one word: merged, as SceneGraph merges similar concepts).
 * Usage: java -cp DIR:spice-1.0.jar:lib/* edu.anu.spice.MgSpiceReference in.json out.json [noSynsets]
 */
package edu.anu.spice;

import java.io.FileReader;
import java.io.FileWriter;
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.json.simple.JSONArray;
import org.json.simple.JSONObject;
import org.json.simple.parser.JSONParser;

import edu.cmu.meteor.aligner.SynonymDictionary;
import edu.cmu.meteor.util.Constants;

public class MgSpiceReference {
	static SynonymDictionary synonyms;

	/* as SceneGraph.getSynSets */
	static Set<Integer> synsetsOf(String word) {
		String key = word.trim().toLowerCase().replace(" ", "_");
		Set<Integer> result = new HashSet<Integer>(synonyms.getSynSets(key));
		result.addAll(synonyms.getStemSynSets(key));
		return result;
	}

	static SemanticConcept conceptOf(JSONArray words) {
		SemanticConcept merged = null;
		for (Object w : words) {
			SemanticConcept one = new SemanticConcept((String) w, synsetsOf((String) w));
			if (merged == null) merged = one;
			else merged.merge(one);
		}
		return merged;
	}

	static TupleSet emptyTupleSet() throws Exception {
		// TupleSet's constructors need a SceneGraph (CoreNLP); allocate without one.
		Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
		f.setAccessible(true);
		sun.misc.Unsafe unsafe = (sun.misc.Unsafe) f.get(null);
		TupleSet ts = (TupleSet) unsafe.allocateInstance(TupleSet.class);
		ts.tuples = new ArrayList<SemanticTuple>();
		return ts;
	}

	static TupleSet tupleSetOf(List<SemanticConcept[]> tuples, TupleFilter filter) throws Exception {
		TupleSet ts = emptyTupleSet();
		for (SemanticConcept[] c : tuples) {
			SemanticTuple t = c.length == 1 ? new SemanticTuple(c[0])
					: c.length == 2 ? new SemanticTuple(c[0], c[1]) : new SemanticTuple(c[0], c[1], c[2]);
			if (filter.operation(t)) ts.add(t);
		}
		Collections.sort(ts.tuples); // as the TupleSet constructor
		return ts;
	}

	static List<SemanticConcept[]> conceptsOf(JSONArray tuples) {
		List<SemanticConcept[]> result = new ArrayList<SemanticConcept[]>();
		for (Object t : tuples) {
			JSONArray tuple = (JSONArray) t;
			SemanticConcept[] c = new SemanticConcept[tuple.size()];
			for (int i = 0; i < c.length; i++) c[i] = conceptOf((JSONArray) tuple.get(i));
			result.add(c);
		}
		return result;
	}

	@SuppressWarnings("unchecked")
	public static void main(String[] args) throws Exception {
		boolean useSynsets = !(args.length > 2 && args[2].equals("noSynsets"));
		String dir = Constants.DEFAULT_SYN_DIR_URL.toString();
		synonyms = new SynonymDictionary(new java.net.URL(dir + "/english.exceptions"),
				new java.net.URL(dir + "/english.synsets"), new java.net.URL(dir + "/english.relations"));
		Map<String, TupleFilter> filters = new LinkedHashMap<String, TupleFilter>();
		filters.put("Object", TupleFilter.objectFilter);
		filters.put("Attribute", TupleFilter.attributeFilter);
		filters.put("Relation", TupleFilter.relationFilter);
		filters.put("Cardinality", TupleFilter.cardinalityFilter);
		filters.put("Color", TupleFilter.colorFilter);
		filters.put("Size", TupleFilter.sizeFilter);
		JSONArray input = (JSONArray) new JSONParser().parse(new FileReader(args[0]));
		JSONArray output = new JSONArray();
		for (Object o : input) {
			JSONObject item = (JSONObject) o;
			List<SemanticConcept[]> test = conceptsOf((JSONArray) item.get("test"));
			List<SemanticConcept[]> refs = conceptsOf((JSONArray) item.get("refs"));
			// as SpiceStats.score
			TupleSet testT = tupleSetOf(test, TupleFilter.noFilter);
			TupleSet refT = tupleSetOf(refs, TupleFilter.noFilter);
			Map<String, Evaluation> scores = new LinkedHashMap<String, Evaluation>();
			scores.put("All", new Evaluation(testT, refT, false, useSynsets));
			for (Map.Entry<String, TupleFilter> e : filters.entrySet())
				scores.put(e.getKey(), new Evaluation(tupleSetOf(test, e.getValue()), tupleSetOf(refs, e.getValue()),
						true, useSynsets));
			JSONObject out = new JSONObject();
			out.put("image_id", item.get("image_id"));
			out.put("scores", new JSONObject(scores));
			out.put("test_tuples", testT);
			out.put("ref_tuples", refT);
			output.add(out);
		}
		FileWriter w = new FileWriter(args[1]);
		w.write(output.toJSONString());
		w.close();
	}
}
