"""Built-in heads: the trainable fully connected ``fc`` head and the fitted scikit-learn heads
(``logreg``, ``svm``, ``knn``, ``nb``, ``tree``, ``rf``)."""
